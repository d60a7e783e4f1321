"""The sweep launcher, `python -m mlplab.tools.sweep FILE`: a wandb sweep file run by wandb's agents when
the server is reachable, or offline on this machine (grid and random expanded here, bayes with an
Optuna TPE study), on GPU-pinned slots, with one record per trial.

    spec.py         the sweep file: its checks (wandb's, the launcher's, the method's)
    trial_commands.py  the grid's combinations and each trial's command line
    steering.py     Hydra overrides from the command line: into every trial, the sweep dir's name, the saved file
    rules.py        wandb's own rules: its schema (vendored), wandb.sweep's fill, the grid as wandb lists it
    paths.py        the sweep dir: what the OS refuses, and how Hydra is given a path with `${`
    search.py       Optuna: wandb's distributions, random draws, the bayes study in the sweep dir
    methods.py      grid, random and bayes: one object each, asked what differs between them
    composition.py  every trial's config composed with Hydra before anything runs
    slots.py        CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS per slot
    processes.py    children in their own process groups that end with the launcher
    warm.py         trials forked from the launcher, which imports torch & co. once
    trials.py       one trial: its process, trial.json, its outcome, whether it still runs
    packing.py      which trials share one process (those that differ only in their seed), and the pack's layout
    pack_launch.py  one pack's process: its directory and links, started or continued, each member's outcome
    storage.py      where the shared Optuna study lives: the sweep dir's journal or a database
    shared.py       the study as the queue several launchers take trials from, none twice
    liveness.py     whether the launcher running a trial is gone, so another takes it over
    offline.py      trials on the slots, reruns, stopping
    online.py       wandb.sweep and `wandb agent --forward-signals` per slot (a fixed seed list: a pack per wandb run)
    __main__.py     the command line
"""
