"""Before any data is read: whether the config's pieces build, and whether the model fits in memory.

Range checks (mlplab.run.config_checks) cover the keys we know; the arguments passed through to torch's
classes are many more. Each group's object is built here once, small, and used once (a norm and
an activation on a tiny batch, the optimizer and scheduler for one step, the augmentation on two
images), so whatever torch refuses is refused in one line naming the group before the run starts.
The memory a model needs is estimated from its widths, before anything of that size is allocated,
and held to what the machine, the process's address-space limit (ulimit -v) and the GPU can give.
A checkpoint's model (eval.py) passes through the same estimate and the same probes.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Sequence
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from mlplab.core.data import member_seeds
from mlplab.run.build import build_module, fast_path
from mlplab.errors import ConfigError

PROBE_WIDTH = 4
# Weights, their gradients and the optimizer's two moment estimates (Adam; SGD's momentum is one).
COPIES_PER_PARAMETER = 4
# Per hidden unit and sample: the Linear's output, the norm's, the activation's, their gradients.
COPIES_PER_ACTIVATION = 6
# Testing keeps no gradients: a layer's input and its output are alive at once.
COPIES_PER_TEST_ACTIVATION = 2
FLOAT_BYTES = 4
GIB = 2**30


def _settings(node: Any) -> str:
    if not OmegaConf.is_config(node):
        return ""
    items = {key: value for key, value in OmegaConf.to_container(node, resolve=True).items()
             if not str(key).startswith("_")}
    return ", ".join(f"{key}={value!r}" for key, value in items.items())


# What a refused group's line ends with: for a config, where to change it. A checkpoint's settings
# are not the user's to change, so its callers pass their own advice.
CONFIG_FIX = "Change {group}.* (python train.py --cfg job shows them)."


def _attempt(group: str, node: Any, build: Callable[[], Any], fix: str = CONFIG_FIX) -> Any:
    """build(), or a ConfigError naming the group, its class and settings, and torch's reason."""
    try:
        return build()
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the library refused, the settings are at fault
        target = node.get("_target_", group) if OmegaConf.is_config(node) else group
        if isinstance(error, InstantiationException) and error.__cause__ is not None:
            error = error.__cause__  # Hydra's wrapper says only which target it called
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError(f"{group}: {target} refused its settings ({_settings(node)}): {reason[:300]}. "
                          + fix.replace("{group}", group)) from None


def _finite(output: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(output).all():
        raise ValueError("it turns a random batch into NaN or inf")
    return output


def _probe_norm_and_activation(cfg: DictConfig, fix: str = CONFIG_FIX) -> None:
    batch = torch.randn(3, PROBE_WIDTH, requires_grad=True)
    norm = _attempt("norm", cfg.norm, lambda: instantiate(cfg.norm)(PROBE_WIDTH), fix)
    _attempt("norm", cfg.norm, lambda: (_finite(norm.train()(batch)), _finite(norm.eval()(batch))), fix)
    activation = _attempt("activation", cfg.activation, lambda: instantiate(cfg.activation)(), fix)
    _attempt("activation", cfg.activation, lambda: _finite(activation(batch)).sum().backward(), fix)


def _tiny_module(cfg: DictConfig, fix: str = CONFIG_FIX) -> Any:
    """The module of cfg with every hidden width PROBE_WIDTH: builds in microseconds whatever the widths."""
    tiny = OmegaConf.merge(cfg, {"model": {"hidden_sizes": [PROBE_WIDTH] * len(cfg.model.hidden_sizes)}})
    return _attempt("model", cfg.model, lambda: build_module(tiny), fix)


def _probe_optimization(cfg: DictConfig) -> None:
    """One step of the optimizer and the scheduler the module configures, on a tiny copy of the model."""
    module = _tiny_module(cfg)
    _attempt("optimizer", cfg.optimizer, lambda: instantiate(cfg.optimizer)(module.parameters()))
    # The optimizer alone builds: what the module's configuration adds that fails is the scheduler's.
    configured = _attempt("scheduler" if cfg.get("scheduler") else "optimizer",
                          cfg.get("scheduler") or cfg.optimizer, module.configure_optimizers)
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    loss = module(torch.randn(3, module.net.linear_layers()[0].in_features)).logsumexp(dim=-1).mean()
    loss.backward()
    _attempt("optimizer", cfg.optimizer, optimizer.step)
    if isinstance(configured, dict):
        _attempt("scheduler", cfg.get("scheduler"), configured["lr_scheduler"]["scheduler"].step)


def _probe_data(cfg: DictConfig) -> None:
    augment = _attempt("augment", cfg.augment, lambda: instantiate(cfg.augment))
    side = get_class(cfg.data._target_).image_shape[0]
    images = torch.rand(2, side * side)
    _attempt("augment", cfg.augment, lambda: augment(images, torch.Generator().manual_seed(0)))
    # Constructing the data module reads nothing: prepare_data and setup do.
    _attempt("data", cfg.data, lambda: instantiate(cfg.data, augment=None, _convert_="all"))


def _probe_callbacks(cfg: DictConfig) -> None:
    """Each configured callback built (they are cheap to construct) and a Lightning callback."""
    import pytorch_lightning as pl

    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        key = f"callbacks.{name}"
        callback = _attempt(key, node, lambda node=node: instantiate(node))
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"{key}: {node.get('_target_')} with these settings builds a "
                              f"{type(callback).__name__}, not a Lightning callback: drop _partial_ / _args_, or "
                              "name a callback of conf/callbacks/.")


def check_builds(cfg: DictConfig) -> None:
    """Raise ConfigError at the first group whose object torch or Lightning refuses to build or run."""
    with torch.random.fork_rng(devices=[]):  # the run's own seeding must not see these draws
        _probe_norm_and_activation(cfg)
        _probe_optimization(cfg)
        _probe_data(cfg)
        _probe_callbacks(cfg)


def check_module_builds(cfg: DictConfig, fix: str) -> None:
    """The probes of check_builds that a saved model's groups need (norm, activation, the module);
    eval.py builds no optimizer, scheduler or augmentation, so those are not probed."""
    with torch.random.fork_rng(devices=[]):
        _probe_norm_and_activation(cfg, fix)
        _tiny_module(cfg, fix)


# ---------------------------------------------------------------------------------------------
# Memory


def model_bytes(hidden_sizes: Sequence[int], largest_batch: int, training: bool = True,
                data: type | None = None, members: int = 1) -> int:
    """The memory a pack of `members` models of these widths needs at least: their weights (with
    gradients and the optimizer's state when training), the largest batch's activations for each,
    and the data set held once, as float32 on its device. Estimated from the widths alone, before
    anything is allocated."""
    from mlplab.core.data import MNISTDataModule
    from mlplab.core.model import MLP

    data = data or MNISTDataModule
    hidden = list(hidden_sizes)
    parameters = MLP.parameter_count(data.input_size, hidden, data.num_classes)
    copies = COPIES_PER_PARAMETER if training else 1
    per_activation = COPIES_PER_ACTIVATION if training else COPIES_PER_TEST_ACTIVATION
    activations = largest_batch * (sum(hidden) + data.num_classes) * per_activation
    dataset = (data.train_size + data.test_size) * data.input_size
    return FLOAT_BYTES * (members * (parameters * copies + activations) + dataset)


def estimated_bytes(cfg: DictConfig) -> int:
    """The memory a training run of cfg needs at least (see model_bytes)."""
    data = get_class(cfg.data._target_)
    epoch = data.train_batches(cfg.data.val_size, cfg.data.batch_size)
    largest_batch = max(fast_path(cfg).train_batch_rows(cfg.data.batch_size, epoch), cfg.data.eval_batch_size)
    return model_bytes(cfg.model.hidden_sizes, largest_batch, data=get_class(cfg.data._target_),
                       members=len(member_seeds(cfg.seed)))


def _process_limit_bytes() -> tuple[int, str] | None:
    """What the address-space limit (ulimit -v) still lets this process map, or None without one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    mapped = 0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # without /proc the limit alone is the best bound known
    return max(soft - mapped, 0), f"this process (address-space limit ulimit -v of {soft / GIB:.1f} GiB)"


def _machine_bytes() -> tuple[int, str] | None:
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024, "this machine"
    except (OSError, KeyError, ValueError):
        return None


def available_bytes() -> tuple[int, str] | None:
    """Memory this process can still get on the host: (bytes, where), or None where unknown.

    The smaller of the machine's available memory and what the process's address-space limit
    leaves: under `ulimit -v` an allocation fails long before the machine runs out."""
    found = [bound for bound in (_machine_bytes(), _process_limit_bytes()) if bound is not None]
    return min(found, key=lambda bound: bound[0]) if found else None


def available_gpu_bytes(trainer: Any) -> tuple[int, str] | None:
    """Free memory of the first GPU when a run with these trainer settings will use one."""
    accelerator = str((trainer or {}).get("accelerator", "auto")).lower()
    if accelerator not in ("auto", "gpu", "cuda") or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(0)
    return free, f"GPU {torch.cuda.get_device_name(0)}"


def check_fits(needed: int, trainer: Any, subject: str, parts: str, fix: str) -> None:
    """Refuse, with the figures, `subject` (whose `parts` need `needed` bytes) where it cannot get them.

    The one memory check: train.py's configs and eval.py's checkpoints both pass through here."""
    for found in (available_bytes(), available_gpu_bytes(trainer)):
        if found is not None and needed > found[0]:
            raise ConfigError(f"{subject} needs about {needed / GIB:.1f} GiB ({parts}), but {found[1]} has "
                              f"{found[0] / GIB:.1f} GiB free: {fix}.")


def check_memory(cfg: DictConfig) -> None:
    """Refuse, with the figures, a model that cannot get the memory it needs to train."""
    check_fits(estimated_bytes(cfg), cfg.trainer, f"model.hidden_sizes={list(cfg.model.hidden_sizes)}",
               "weights, gradients, optimizer state, batches and data",
               "use smaller widths or fewer layers (or a smaller data.eval_batch_size)")
