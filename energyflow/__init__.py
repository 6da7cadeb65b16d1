"""energyflow: flow matching towards targets `q(x) ∝ p(x) exp(-beta E(x))`, in JAX + Equinox."""

from . import toys as toys
from ._fit import FlowModel as FlowModel, fit as fit
from ._guidance import GuidedVelocity as GuidedVelocity, sample_guided as sample_guided
from ._losses import (
    cfm_loss as cfm_loss,
    energy_guided_loss as energy_guided_loss,
    energy_weighted_loss as energy_weighted_loss,
    energy_weights as energy_weights,
    group_softmax as group_softmax,
    tempered_beta as tempered_beta,
)
from ._nets import MLPVelocity as MLPVelocity, SinusoidalTimeEmbedding as SinusoidalTimeEmbedding
from ._paths import (
    AbstractProbPath as AbstractProbPath,
    AffineProbPath as AffineProbPath,
    GuidedGaussianPath as GuidedGaussianPath,
    PathSample as PathSample,
)
from ._solver import (
    log_prob as log_prob,
    sample as sample,
    sample_with_log_prob as sample_with_log_prob,
)
from ._schedulers import (
    AbstractScheduler as AbstractScheduler,
    CondOTScheduler as CondOTScheduler,
    CosineScheduler as CosineScheduler,
    SchedulerOutput as SchedulerOutput,
    VPScheduler as VPScheduler,
)

__version__ = "0.1.0"

# Public objects print under the name users import them by (`energyflow.FlowModel`, not `energyflow._fit.FlowModel`).
for _public in (
    FlowModel, fit, GuidedVelocity, sample_guided, cfm_loss, energy_guided_loss, energy_weighted_loss, energy_weights,
    group_softmax, tempered_beta, MLPVelocity, SinusoidalTimeEmbedding, AbstractProbPath, AffineProbPath,
    GuidedGaussianPath, PathSample, log_prob, sample, sample_with_log_prob, AbstractScheduler, CondOTScheduler,
    CosineScheduler, SchedulerOutput, VPScheduler,
):
    _public.__module__ = __name__
del _public
