"""Random search from the prior, best of budget: the floor every learning method must beat.

Each round draws m fresh samples from the pre-trained model p0 and pays for them; nothing is
learned, so the generator stays p0 and its success rate is the base rate. What the budget buys is
the set of distinct successes found among the paid samples. It is what policy gradient
degenerates into when every reward is 0 (paper, §1), and the noise floor of the "cumulative best"
protocol: the best of several evaluations of p0 is above p0's rate by chance.

Knobs: none beyond ``samples_per_round``, ``budget`` and ``seed``.
"""

from __future__ import annotations

from banel_ray.methods.base import Method


class RandomSearch(Method):
    name = "random"
    _rate: dict | None = None

    def computed_rate(self):
        """The task's computed rate of p0 (the generator never changes): computed once, here."""
        from banel_ray.tasks.base import Task

        task = self.ctx.task
        if type(task).success_rate is Task.success_rate:
            return None
        if self._rate is None:
            from banel_ray.models import load_model

            self._rate = task.success_rate(load_model(self.ctx.prior_dir))
        return self.rt.put(self._rate) if self._rate is not None else None
