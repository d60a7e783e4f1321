"""What gradient_norms.png shows, in words written from the runs' own numbers, so that the text in
PROVENANCE.md says what the figure beside it shows, whatever runs made it.

Each sentence states a measure (gradient_rms.py) of the three gradient runs, deep_sigmoid with Adam
and with SGD and deep_relu with Adam, one net and one init; a sentence that explains a contrast is
written only where the numbers show that contrast.
"""

from __future__ import annotations

import math
import textwrap

from mlplab.tools.gradient_rms import GradientRMS, first_to_last_ratio, layer_factors, profile, rising_until

CHANCE = 0.1  # test accuracy of a guess among MNIST's ten classes
SIGMOID_SLOPE_LIMIT = 4.0  # sigmoid' <= 1/4: each sigmoid layer passes down at most a quarter
GROWTH_STEPS = 100  # how far after the vanishing phase the input layer's growth is measured
LINE_WIDTH = 104  # of the paragraph in PROVENANCE.md
HIDDEN_EPOCHS = 10.0  # epoch means hide the vanishing phase when they are this much above its ratio


def times(factor: float) -> str:
    """A factor in words: 3 significant digits, a thousandfold and more in whole numbers (5,000x, not 5e+03x)."""
    return f"{factor:.3g}x" if factor < 1000 else f"{factor:,.0f}x"


def sigmoid_start(adam: GradientRMS, sgd: GradientRMS) -> str:
    """How the sigmoid nets' gradient falls layer by layer towards the input in the first interval."""
    factors = [factor for run in (adam, sgd) for factor in layer_factors(profile(run.by_interval, 0))]
    ratio = max(first_to_last_ratio(run.by_interval, 0) for run in (adam, sgd))
    start = f"At the start (steps 1-{adam.steps[0]}), with either optimizer,"
    if min(factors, default=0.0) <= 1:
        return (f"{start} the sigmoid layers' gradient RMS does not fall layer by layer towards the input; "
                f"the input layer gets {ratio:.2g} of the output layer's.")
    why = " (sigmoid' <= 1/4)" if min(factors) >= SIGMOID_SLOPE_LIMIT else ""
    return (f"{start} each sigmoid layer's gradient RMS is at least {times(min(factors))} below the next layer's"
            f"{why}: the input layer gets {ratio:.2g} of the output layer's or less.")


def relu_start(relu: GradientRMS) -> str:
    """How close the ReLU net's layers below the output one are to each other in the first interval."""
    factors = layer_factors(profile(relu.by_interval, 0)[:-1])
    if not factors:
        return ""
    spread = max(max(factor, 1 / factor) if factor else math.inf for factor in factors)
    return f"Each ReLU layer below the output one is within {times(spread)} of the next."


def lasting(gradients: GradientRMS) -> str:
    """How long the run's RMS rises layer by layer from input to output, in words."""
    rising = rising_until(gradients)
    if rising is None:
        return f"is gone by steps 1-{gradients.steps[0]}"
    if rising == gradients.steps[-1]:
        return f"lasts through every interval of its {len(gradients.epochs)} epochs"
    return f"lasts through step {rising}"


def sgd_course(sgd: GradientRMS, accuracy: float | None) -> str:
    learned = "" if accuracy is None else f", and the net reaches {accuracy:.2%} test accuracy (chance: {CHANCE:.0%})"
    return f"With SGD the sigmoid's profile {lasting(sgd)}{learned}."


def input_growth(gradients: GradientRMS, after: int) -> float:
    """How many times the input layer's RMS at step `after` it reaches within GROWTH_STEPS steps."""
    first = gradients.by_interval[min(gradients.by_interval)]
    start = gradients.steps.index(after)
    window = [value for step, value in zip(gradients.steps, first) if after < step <= after + GROWTH_STEPS]
    return max(window, default=first[start]) / first[start] if first[start] else math.inf


def adam_course(adam: GradientRMS, relu: GradientRMS) -> str:
    """How long the sigmoid's profile lasts with Adam, what the input layer does then, and where it ends up."""
    sentence = f"With Adam it {lasting(adam)}"
    rising = rising_until(adam)
    if rising is not None and rising != adam.steps[-1]:
        sentence += (f": in the {GROWTH_STEPS} steps after, the input layer's RMS grows "
                     f"{times(input_growth(adam, rising))}")
    last = profile(adam.by_interval, -1)
    smallest = "still" if last[0] <= min(last[1:-1], default=last[0]) else "no longer"
    epoch = adam.epochs[-1]
    return (f"{sentence}; by step {adam.steps[-1]} the input layer's RMS is {smallest} the smallest, and in epoch "
            f"{epoch} the input / output ratio of the epoch means is {first_to_last_ratio(adam.by_epoch):.3g} "
            f"(ReLU's: {first_to_last_ratio(relu.by_epoch):.3g}).")


def epoch_means(adam: GradientRMS) -> str:
    """Whether the first epoch's mean hides the vanishing phase of its first steps."""
    start, first_epoch = first_to_last_ratio(adam.by_interval, 0), first_to_last_ratio(adam.by_epoch, 0)
    if first_epoch < HIDDEN_EPOCHS * start:
        return ""
    return (f"Epoch means hide the vanishing phase: with Adam the sigmoid's ratio is {first_epoch:.2g} in epoch "
            f"{adam.epochs[0]}, against {start:.2g} in steps 1-{adam.steps[0]}.")


def adam_cause(adam: GradientRMS, sgd: GradientRMS) -> str:
    """The likely cause of the contrast, said only where Adam's profile ends and SGD's does not."""
    if rising_until(adam) in (None, adam.steps[-1]) or rising_until(sgd) != sgd.steps[-1]:
        return ""
    return ("Adam sizes each weight's step by that weight's own gradient history, so the lower layers learn "
            "despite tiny gradients: the likely cause, seen here only as the contrast with SGD (which also "
            "differs in learning rate and momentum).")


def background_pixels(relu: GradientRMS) -> str:
    """Why the ReLU net's input layer sits below its hidden layers, said only where it does."""
    first_epoch = profile(relu.by_epoch, 0)
    if len(first_epoch) < 3 or first_epoch[0] >= min(first_epoch[1:-1]):
        return ""
    return ("The input layer's RMS also counts the weights of background pixels, 0 in most images and so "
            "without gradient: part of why it sits below the hidden layers' in the ReLU net's first epoch too.")


def gradient_findings(sigmoid_adam: GradientRMS, sigmoid_sgd: GradientRMS, relu_adam: GradientRMS,
                      sgd_accuracy: float | None) -> str:
    """The paragraph under the gradient figure's numbers in PROVENANCE.md."""
    sentences = [sigmoid_start(sigmoid_adam, sigmoid_sgd), relu_start(relu_adam), sgd_course(sigmoid_sgd, sgd_accuracy),
                 adam_course(sigmoid_adam, relu_adam), epoch_means(sigmoid_adam),
                 adam_cause(sigmoid_adam, sigmoid_sgd), background_pixels(relu_adam)]
    paragraph = " ".join(sentence for sentence in sentences if sentence)
    return textwrap.fill(paragraph, width=LINE_WIDTH, break_long_words=False, break_on_hyphens=False)
