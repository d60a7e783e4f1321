"""The sweep launcher, `python -m mlplab.sweep FILE`: a wandb sweep file run by wandb's agents when
the server is reachable, or offline on this machine (grid and random expanded here, bayes with an
Optuna TPE study), on GPU-pinned slots, with one record per trial.

    spec.py         the sweep file: wandb's rules, grid expansion, each trial's command line
    paths.py        the sweep dir: what the OS refuses, and how Hydra is given a path with `${`
    search.py       Optuna: wandb's distributions, random draws, the bayes study in the sweep dir
    composition.py  every trial's config composed with Hydra before anything runs
    slots.py        CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS per slot
    processes.py    children in their own process groups that end with the launcher
    warm.py         trials forked from the launcher, which imports torch & co. once
    trials.py       one trial: its process, trial.json, its outcome, whether it still runs
    logs.py         a failed process's real error from its error.log or log, without Hydra's hints
    offline.py      trials on the slots, reruns, stopping
    online.py       wandb.sweep and `wandb agent --forward-signals` per slot
    __main__.py     the command line
"""
