"""The widget's *Advanced* settings as a magicgui form: how to sample, where, and what to animate.

Device, sampler, steps, ensemble, seed, threshold, the volume scope and the x_0 animation
are diffusion jargon most annotators never touch, so the segmentation widget keeps them in
a collapsed section, filled with the recommended values
(:mod:`medsegdiff_training.sampling_defaults`, no torch). Choosing a sampler sets its
recommended steps; **Recommended values** puts every field back.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton, SpinBox

from medsegdiff_training.sampling_defaults import (  # torch-free: the core's recommendation
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    DEVICE_CHOICES,
    RECOMMENDED_ENSEMBLE,
    RECOMMENDED_STEPS,
    SAMPLER_LABELS,
    SamplingSettings,
)

from ._models import set_device_choices

SCOPES = ("current slice", "all slices")


class SamplingForm(Container):
    """Device, sampler, steps, ensemble, seed, threshold, volume scope, x_0 animation."""

    def __init__(self) -> None:
        self.device = ComboBox(label="Device", choices=list(DEVICE_CHOICES), value="auto")
        self.sampler = ComboBox(label="Sampler", choices=list(SAMPLER_LABELS), value=DEFAULT_SAMPLER)
        self.steps = SpinBox(label="Steps", min=1, max=1000, value=RECOMMENDED_STEPS[DEFAULT_SAMPLER])
        self.ensemble = SpinBox(
            label="Ensemble",
            min=1,
            max=32,
            value=RECOMMENDED_ENSEMBLE,
            tooltip="Samples averaged into the result (one batch); more than one also gives the "
            "uncertainty layer and the warning when the answer is probably poor.",
        )
        self.seed = SpinBox(label="Seed", min=0, max=2**31 - 1, value=DEFAULT_SEED)
        self.threshold = FloatSpinBox(
            label="Threshold",
            min=0.01,
            max=0.99,
            step=0.05,
            value=DEFAULT_THRESHOLD,
            tooltip="Foreground threshold of binary models; K-class models take the argmax.",
        )
        self.scope = ComboBox(label="Volumes", choices=list(SCOPES), value=SCOPES[0])
        self.animate_x0 = CheckBox(text="animate the predicted x₀ instead of x_t", value=False)
        self.recommended = PushButton(text="Recommended values")
        super().__init__(
            widgets=[
                self.device,
                self.sampler,
                self.steps,
                self.ensemble,
                self.seed,
                self.threshold,
                self.scope,
                self.animate_x0,
                self.recommended,
            ],
            labels=True,
        )
        self.margins = (0, 0, 0, 0)
        set_device_choices(self.device, None)
        self.sampler.changed.connect(self._recommended_steps)
        self.recommended.changed.connect(self.reset)

    def _recommended_steps(self, sampler: Any) -> None:
        self.steps.value = RECOMMENDED_STEPS[str(sampler)]

    def reset(self, *_: object) -> None:
        """Every field back to the recommended value (the device choice stays)."""
        self.sampler.value = DEFAULT_SAMPLER
        self.steps.value = RECOMMENDED_STEPS[DEFAULT_SAMPLER]
        self.ensemble.value = RECOMMENDED_ENSEMBLE
        self.seed.value = DEFAULT_SEED
        self.threshold.value = DEFAULT_THRESHOLD
        self.scope.value = SCOPES[0]
        self.animate_x0.value = False

    def settings(self) -> SamplingSettings:
        """The sampling settings the form shows."""
        return SamplingSettings(
            sampler=str(self.sampler.value),
            steps=int(self.steps.value),
            ensemble=int(self.ensemble.value),
            seed=int(self.seed.value),
            threshold=float(self.threshold.value),
        )

    def is_recommended(self) -> bool:
        """Whether the sampling settings are the recommended ones (the section may stay closed)."""
        return self.settings().to_dict() == SamplingSettings().to_dict() and not self.animate_x0.value

    def summary(self) -> str:
        """One line for the collapsed section's title, e.g. ``DDIM 3 steps x 5, auto``."""
        settings = self.settings()
        name = {"ddim": "DDIM", "ddpm": "DDPM", "dpm++": "DPM-Solver++"}[settings.sampler]
        tag = "recommended" if self.is_recommended() else "changed"
        return f"{name} {settings.resolved_steps()} steps × {settings.ensemble}, {self.device.value} ({tag})"
