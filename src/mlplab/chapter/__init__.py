"""The chapter's results from one command: `python -m mlplab.chapter` (also `make chapter`).

It runs each table's sweep on this machine with packs (`campaign.py`: resumable, one CPU thread per
trial, each stretch of work timed into <chapter dir>/timing.jsonl), refuses runs whose training code
is not the checkout's (`provenance` of each record against `git`), computes each table's cells and
its paired-by-seed comparisons on validation accuracy with Holm's correction (`cells.py`,
`findings.py`), and writes docs/results/<table>.md and the generated blocks of docs/results.md
(`pages.py`, `blocks.py`). `--verify K` reruns K cells and checks each mean against its published
rerun interval (`verification.py`). What each table is made of lives in `contents.py`.
"""
