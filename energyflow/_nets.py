"""Small velocity networks. Any `eqx.Module` with the call `model(x, t, context) -> velocity` works in their place."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike


class SinusoidalTimeEmbedding(eqx.Module):
    """`t -> [sin(2 pi f_k t), cos(2 pi f_k t)]` with log-spaced frequencies `f_k` from 1 to `max_frequency`."""

    frequencies: Float[Array, " half"]

    def __init__(self, dim: int, max_frequency: float = 32.0):
        if dim < 2 or dim % 2:
            raise ValueError(f"time embedding dim must be an even number >= 2, got {dim}")
        self.frequencies = jnp.exp(jnp.linspace(0.0, math.log(max_frequency), dim // 2))

    def __call__(self, t: ScalarLike) -> Float[Array, " dim"]:
        angles = 2.0 * jnp.pi * jnp.asarray(t) * jax.lax.stop_gradient(self.frequencies)
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class MLPVelocity(eqx.Module):
    """An MLP velocity field `v(x, t, context)`: the input is `[x, embed(t), context]`.

    Attributes:
        dim: data dimension.
        context_dim: context dimension (0 for unconditional models; then `context` must be `None`).
    """

    mlp: eqx.nn.MLP
    embed: SinusoidalTimeEmbedding
    dim: int = eqx.field(static=True)
    context_dim: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int = 0,
        width: int = 256,
        depth: int = 3,
        time_embed_dim: int = 32,
        activation=jax.nn.silu,
        key: PRNGKeyArray,
    ):
        if dim < 1 or context_dim < 0 or width < 1 or depth < 1:
            raise ValueError(
                f"need dim >= 1, context_dim >= 0, width >= 1, depth >= 1; got dim={dim}, context_dim={context_dim}, "
                f"width={width}, depth={depth}"
            )
        self.dim = dim
        self.context_dim = context_dim
        self.embed = SinusoidalTimeEmbedding(time_embed_dim)
        self.mlp = eqx.nn.MLP(
            in_size=dim + time_embed_dim + context_dim,
            out_size=dim,
            width_size=width,
            depth=depth,
            activation=activation,
            key=key,
        )

    def __call__(
        self,
        x: Float[Array, " dim"],
        t: ScalarLike,
        context: Float[Array, " ctx"] | None = None,
    ) -> Float[Array, " dim"]:
        parts = [x, self.embed(t)]
        if self.context_dim:
            if context is None:
                raise ValueError(f"this model expects a context of size {self.context_dim}, got None")
            parts.append(context)
        elif context is not None:
            raise ValueError(
                f"this model was built without a context (context_dim=0) but was given one of shape {context.shape}; "
                "build it with MLPVelocity(dim, context_dim=...)"
            )
        return self.mlp(jnp.concatenate(parts))
