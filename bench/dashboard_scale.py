"""The report page at scale: fabricated sweeps of N runs, their page's size, the time to write it,
and the time headless Chromium takes to open it and draw every chart. Figures for docs/dashboard.md.

Each fabricated run looks like a 20-epoch train.py run (logging every 50 steps): the 17 curves a
real run logs to csv/metrics.csv (~300 points each for the per-interval ones), metrics.json,
status.json, .hydra/ with its overrides, and the two PNGs train.py saves. Grid: activation x
optimizer.lr x 5 seeds. Also takes a screenshot of any page (for the docs).

    python bench/dashboard_scale.py --runs 200 500 [--out outputs/dashboard_scale]
    python bench/dashboard_scale.py --shoot PAGE.html --png docs/figures/dashboard.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "elu", "selu", "silu", "leaky_relu", "prelu", "swish")
RATES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)
SEEDS = (1, 2, 3, 4, 5)
EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 20, 750, 50
PER_EPOCH = ["val/acc", "val/acc_best", "val/loss", "train/acc_epoch", "train/loss_epoch",
             *(f"{kind}/linear{layer}" for kind in ("grad_rms", "grad_norm") for layer in (0, 1)),
             *(f"activation/layer0/{name}" for name in ("mean", "std", "zero_frac", "dead_frac"))]
PER_INTERVAL = ["train/loss", "train/acc", "grad_rms_interval/linear0", "grad_rms_interval/linear1"]


def fabricate_run(directory: Path, overrides: dict, quality: float, rng: np.random.Generator, png: bytes) -> None:
    """One finished run's files, its curves rising towards `quality`."""
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    (directory / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": overrides["seed"]}))
    rows = []
    for step in range(LOG_EVERY, EPOCHS * STEPS_PER_EPOCH + 1, LOG_EVERY):
        progress = 1 - np.exp(-step / 3000)
        values = {"train/loss": 2.3 * (1 - progress) + 0.05, "train/acc": quality * progress}
        values.update({name: 0.01 * (1 - progress) for name in PER_INTERVAL[2:]})
        rows.append({"step": step, **{name: value + rng.normal(0, 0.01) for name, value in values.items()}})
    for epoch in range(EPOCHS):
        progress = 1 - np.exp(-(epoch + 1) / 4)
        rows.append({"epoch": epoch, "step": (epoch + 1) * STEPS_PER_EPOCH - 1,
                     **{name: quality * progress + rng.normal(0, 0.003) for name in PER_EPOCH}})
    columns = ["epoch", "step", *PER_INTERVAL, *PER_EPOCH]
    lines = [",".join(columns)] + [",".join(f"{row[name]:.6g}" if name in row else "" for name in columns)
                                   for row in rows]
    (directory / "csv").mkdir()
    (directory / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    test_acc = quality + rng.normal(0, 0.002)
    (directory / "metrics.json").write_text(json.dumps({
        "test_acc": test_acc, "test_loss": 1 - test_acc, "val_acc_best": quality, "epochs": EPOCHS,
        "global_steps": EPOCHS * STEPS_PER_EPOCH, "fit_seconds": 60.0}))
    (directory / "status.json").write_text(json.dumps({"status": "finished"}))
    (directory / "figures").mkdir()
    for name in ("weights.png", "confusion_matrix.png"):
        (directory / "figures" / name).write_bytes(png)


def fabricate_sweep(root: Path, count: int) -> Path:
    """`count` runs (a multiple of 50) of the activation x lr x seed grid, and the sweep.yaml naming val/acc."""
    rng = np.random.default_rng(count)
    image = root / "figure.png"
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (280, 280, 3), dtype=np.uint8)).save(image)
    grid = list(itertools.product(ACTIVATIONS[: count // 50], RATES, SEEDS))
    sweep = root / f"sweep{count}"
    for index, (activation, rate, seed) in enumerate(grid):
        quality = 0.9 + 0.08 * np.exp(-abs(np.log10(rate) + 3)) - 0.01 * ACTIVATIONS.index(activation) / 10
        fabricate_run(sweep / f"{index:04d}", {"activation": activation, "optimizer.lr": rate, "seed": seed},
                      quality + rng.normal(0, 0.003), rng, image.read_bytes())
    spec = {"method": "grid", "metric": {"name": "val/acc", "goal": "maximize"}}
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(spec))
    return sweep


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


DRAWN = """return Array.from(document.querySelectorAll('div.chart'))
                .every(chart => chart.querySelector('.main-svg') !== null)"""


def load_seconds(driver, page: Path, tries: int = 3) -> float:
    """The median over `tries` fresh loads of the time from the request until every chart is drawn."""
    times = []
    for _ in range(tries):
        driver.get("about:blank")
        start = time.perf_counter()
        driver.get(page.as_uri())  # returns after the load event
        while not driver.execute_script(DRAWN):
            time.sleep(0.01)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(counts: list[int], out: Path) -> None:
    from mlplab.tools.report import write_report

    driver = browser()
    try:
        for count in counts:
            sweep = fabricate_sweep(out, count)
            start = time.perf_counter()
            written = write_report(sweep, sweep / "report.html")
            seconds = time.perf_counter() - start
            size = written.html.stat().st_size
            print(f"{count} runs: page {size / 1e6:.1f} MB, written in {seconds:.1f} s, "
                  f"drawn in headless Chromium in {load_seconds(driver, written.html):.2f} s (median of 3)",
                  flush=True)
    finally:
        driver.quit()


def shoot(page: Path, png: Path, width: int = 1400, height: int = 2600) -> None:
    """A screenshot of the page's top `height` pixels, once its charts are drawn."""
    driver = browser()
    try:
        driver.set_window_size(width, height)
        load_seconds(driver, page, tries=1)
        time.sleep(0.5)
        png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
    print(f"{page} -> {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[200, 500], help="sweep sizes, multiples of 50")
    parser.add_argument("--out", type=Path, default=Path("outputs/dashboard_scale"))
    parser.add_argument("--shoot", type=Path, help="an existing page to take a screenshot of, instead")
    parser.add_argument("--png", type=Path, default=Path("dashboard.png"))
    args = parser.parse_args(argv)
    if args.shoot:
        shoot(args.shoot.resolve(), args.png)
    else:
        if any(count % 50 or not 50 <= count <= 500 for count in args.runs):
            parser.error(f"--runs {args.runs}: each must be a multiple of 50 from 50 to 500")
        measure(args.runs, args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
