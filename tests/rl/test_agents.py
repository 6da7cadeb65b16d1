"""Unit tests of the agents' shared parts, loss pieces, phases and configs (FlowQ, QIPO, IQL).

Networks are tiny (width 32) and each agent's update is compiled once per module: a `lax.scan` over `CHUNK`
updates on one fixed batch, called repeatedly. Everything is seeded; the few statistical checks (losses going down on
a fixed batch) compare means over windows of 20 updates with wide margins, so they do not depend on the exact
floating-point path. The contract every registered agent follows (init, update, act, checkpoint, resume) is tested
in `test_contract.py`.
"""

import dataclasses
import functools
import io
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import energyflow
from energyflow import energy_guided_loss, energy_weighted_loss, tempered_beta
from rl.agents import critics, flowq, iql, qipo
from rl.agents.base import at_least, between, check_init, validate
from rl.agents.critics import (
    IQLCritic,
    IQLCriticConfig,
    data_q_target,
    expectile_loss,
    init_iql_critic,
    init_softmax_critic,
    iql_q_target,
    softmax_critic_target,
    softmax_q_value,
    td_target,
    update_iql_critic,
    value_loss,
)
from rl.agents.iql import GaussianPolicyConfig
from rl.agents.nets import (
    LayerNormMLP,
    QEnsemble,
    ValueNetwork,
    batch_apply,
    choose,
    min_q,
    mlp,
    pick,
    q_values,
    state_values,
)
from rl.agents.optim import apply_gradients, make_optimizer, polyak_update
from rl.agents.policies import FlowPolicyConfig, best_of_n, sample_flow_actions
from rl.data import Transitions

OBS_DIM, ACT_DIM, BATCH = 3, 2, 32
CHUNK = 20

CRITIC = IQLCriticConfig(lr=2e-3, width=32)
# plain sampling (and IQL's mean action), FlowQ's energy-unit weights at beta 3: the mechanics these tests check;
# the defaults' best-of-N and IQL-unit weights have tests of their own
FLOW = FlowPolicyConfig(lr=2e-3, width=32, depth=2, sample_steps=3, best_of_n=1)
TINY = {
    "iql": iql.Config(critic=CRITIC, policy=GaussianPolicyConfig(lr=2e-3, width=32, best_of_n=1)),
    "flowq": flowq.Config(critic=CRITIC, policy=FLOW, weight_unit="energy", beta=3.0, min_ess=None),
    "qipo": qipo.Config(
        critic_loss="softmax",  # the default critic is IQL's, tested with the other agents; keep this path exercised
        critic=CRITIC,
        policy=FLOW,
        warmup_steps=CHUNK,
        renew_every=4,
        pool_size=16,
        support_size=4,
        critic_candidates=4,
        policy_batch=8,
        support_steps=3,
    ),
}
MODULES = {"iql": iql, "flowq": flowq, "qipo": qipo}


def make_batch(key, n=BATCH):
    """A fixed synthetic batch: reward depends on state and action, half the transitions terminate."""
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (n, OBS_DIM))
    action = jnp.clip(0.5 * jax.random.normal(k2, (n, ACT_DIM)), -0.99, 0.99)
    reward = jnp.sum(obs[:, :ACT_DIM] * action, axis=-1) + 0.1 * obs[:, -1]
    next_obs = obs + 0.1 * jax.random.normal(k3, (n, OBS_DIM))
    terminal = (jnp.arange(n) % 2).astype(jnp.float32)
    return Transitions(obs=obs, action=action, reward=reward, next_obs=next_obs, terminal=terminal)


def _probe(state):
    """What the scan records after every update (QIPO: its support pool)."""
    return state.pool.support if isinstance(state, qipo.State) else jnp.zeros(())


@functools.cache
def _make_runner(module):
    @eqx.filter_jit
    def run(state, batch, key):
        # networks hold their activation functions: scan over the array leaves only
        arrays, static = eqx.partition(state, eqx.is_array)

        def body(a, k):
            s, info = module.update(eqx.combine(a, static), batch, key=k)
            return eqx.filter(s, eqx.is_array), (info, _probe(s))

        arrays, out = jax.lax.scan(body, arrays, jax.random.split(key, CHUNK))
        return eqx.combine(arrays, static), out

    return run


@pytest.fixture(scope="module")
def batch():
    return make_batch(jax.random.key(0))


@pytest.fixture(scope="module", params=["iql", "flowq", "qipo"])
def trained(request, batch):
    """Each agent after 10 chunks of updates on the fixed batch, with the per-chunk diagnostics."""
    name = request.param
    module = MODULES[name]
    state0 = module.init(TINY[name], obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(1))
    run = _make_runner(module)
    state, chunks, probes = state0, [], []
    for i in range(10):
        state, (info, probe) = run(state, batch, jax.random.key(100 + i))
        chunks.append(jax.tree.map(np.asarray, info))
        probes.append(np.asarray(probe))
    infos = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return name, module, state0, state, infos, probes


# ----------------------------------------------------------------------------------------------------------------------
# Loss pieces


def test_expectile_loss_is_asymmetric_and_half_mse_at_one_half():
    diff = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(expectile_loss(diff, 0.5), 0.5 * diff**2, rtol=1e-6)
    loss = expectile_loss(diff, 0.9)
    # positive errors (target above the prediction) cost tau, negative ones 1 - tau
    np.testing.assert_allclose(loss, [0.1 * 4.0, 0.1 * 0.25, 0.0, 0.9 * 0.25, 0.9 * 4.0], rtol=1e-6)
    assert loss[4] > loss[0]


def test_expectile_regression_finds_the_expectile():
    """Minimising the mean expectile loss over a constant gives the tau-expectile, above the mean for tau > 0.5."""
    samples = jnp.array([0.0, 1.0, 2.0, 10.0])
    grid = jnp.linspace(0.0, 10.0, 10001)
    losses = jax.vmap(lambda c: jnp.mean(expectile_loss(samples - c, 0.7)))(grid)
    best = float(grid[jnp.argmin(losses)])
    # the 0.7-expectile solves 0.7 sum_{x>c}(x - c) = 0.3 sum_{x<c}(c - x); with only x = 10 above c:
    # 0.7 (10 - c) = 0.3 (3c - 3), so c = 7.9 / 1.6 = 4.9375
    assert abs(best - 4.9375) < 2e-3
    assert best > float(jnp.mean(samples))


def test_td_target_by_hand():
    reward = jnp.array([1.0, 2.0, -1.0])
    terminal = jnp.array([0.0, 1.0, 0.0])
    next_value = jnp.array([10.0, 10.0, 4.0])
    np.testing.assert_allclose(td_target(reward, terminal, next_value, 0.9), [10.0, 2.0, 2.6], rtol=1e-6)


def test_iql_q_target_by_hand(batch):
    value = ValueNetwork(OBS_DIM, width=8, depth=1, key=jax.random.key(3))
    target = iql_q_target(value, batch, discount=0.9)
    for i in range(4):
        v_next = float(value(batch.next_obs[i]))
        expected = float(batch.reward[i]) + 0.9 * (1.0 - float(batch.terminal[i])) * v_next
        assert abs(float(target[i]) - expected) < 1e-5


def _critic_with_a_distinct_target(config, key):
    """An IQL critic whose target ensemble differs from its online one (they start equal)."""
    k1, k2 = jax.random.split(key)
    critic = init_iql_critic(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=k1)
    other = QEnsemble(OBS_DIM, ACT_DIM, width=config.width, depth=config.depth, num_q=config.num_q, key=k2)
    return eqx.tree_at(lambda c: c.q_target, critic, other)


def test_iql_value_loss_uses_the_min_of_the_target_ensemble(batch):
    config = IQLCriticConfig(width=8, depth=1, num_q=2, lr=1e-3)
    critic = _critic_with_a_distinct_target(config, jax.random.key(4))
    q_data = data_q_target(critic.q_target, batch)
    qs = jax.vmap(critic.q_target)(batch.obs, batch.action)
    np.testing.assert_allclose(q_data, jnp.min(qs, axis=-1), rtol=1e-5, atol=1e-6)
    loss, _ = value_loss(critic.value, batch.obs, q_data, expectile=0.7)
    diff = jnp.min(qs, axis=-1) - jax.vmap(critic.value)(batch.obs)
    expected = np.mean(np.where(diff > 0, 0.7, 0.3) * np.asarray(diff) ** 2)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # the critic step computes the same q_data itself when not given it, from the target (not the online) ensemble
    _, info = update_iql_critic(critic, batch, config)
    np.testing.assert_allclose(float(info["value_loss"]), expected, rtol=1e-5)
    online = value_loss(critic.value, batch.obs, min_q(critic.q, batch.obs, batch.action), expectile=0.7)[0]
    assert abs(float(online) - expected) > 1e-3 * expected


def test_iql_actor_weights_read_the_target_q_of_the_value_step(batch):
    """IQL's reference order: the actor's advantage is min Q_target(s, a) from *before* the Polyak step (the array the
    value step regressed on) minus the *new* V(s). A large tau makes the target after the step clearly different."""
    config = dataclasses.replace(TINY["iql"], critic=dataclasses.replace(CRITIC, tau=0.5))
    state = iql.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(40))
    state = dataclasses.replace(state, critic=_critic_with_a_distinct_target(config.critic, jax.random.key(41)))
    new, info = eqx.filter_jit(iql.update)(state, batch, key=jax.random.key(0))
    v_new = state_values(new.critic.value, batch.obs)
    before = jnp.mean(data_q_target(state.critic.q_target, batch) - v_new)
    after = jnp.mean(data_q_target(new.critic.q_target, batch) - v_new)
    np.testing.assert_allclose(float(info["adv_mean"]), float(before), rtol=1e-5, atol=1e-6)
    assert abs(float(before) - float(after)) > 1e-2
    # the actor's step is the gradient of actor_loss against the new critic with that q_data
    q_data = data_q_target(state.critic.q_target, batch)
    loss, _ = iql.actor_loss(state.policy, new.critic, batch.obs, batch.action, config, q_data=q_data)
    np.testing.assert_allclose(float(info["actor_loss"]), float(loss), rtol=1e-5)


def test_iql_min_ess_weights_at_the_tempered_temperature(batch):
    """IQL's min_ess is AWR at the temperature energyflow.tempered_beta finds for the capped weights' shape
    softmax(min(temperature A, log max_weight)): its loss equals the loss at that temperature by hand, the floor is
    kept exactly where it binds, and without a binding floor the loss is the paper's."""
    config = dataclasses.replace(TINY["iql"], temperature=30.0, max_weight=50.0, min_ess=None)
    state = iql.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(42))
    critic = state.critic
    # advantages spread enough that the floor binds at temperature 30 (a fresh critic's are all near 0)
    advantage = 0.5 * jax.random.normal(jax.random.key(43), (len(batch.obs),))
    q_data = state_values(critic.value, batch.obs) + advantage
    floor = 0.8
    loss, info = iql.actor_loss(state.policy, critic, batch.obs, batch.action,
                                dataclasses.replace(config, min_ess=floor), q_data=q_data)
    tempered = float(info["temperature"])
    assert 0.0 < tempered < 30.0
    capped = jnp.minimum(tempered * advantage, np.log(50.0))
    ess = float(jnp.sum(jnp.exp(capped)) ** 2 / jnp.sum(jnp.exp(2 * capped)))
    np.testing.assert_allclose(ess / len(batch.obs), floor, rtol=1e-4)
    by_hand, _ = iql.actor_loss(state.policy, critic, batch.obs, batch.action,
                                dataclasses.replace(config, temperature=tempered), q_data=q_data)
    np.testing.assert_allclose(float(loss), float(by_hand), rtol=1e-5)
    # a floor the paper's weights already keep changes nothing
    loose, info = iql.actor_loss(state.policy, critic, batch.obs, batch.action,
                                 dataclasses.replace(config, min_ess=1e-6), q_data=q_data)
    paper, _ = iql.actor_loss(state.policy, critic, batch.obs, batch.action, config, q_data=q_data)
    assert float(info["temperature"]) == 30.0 and float(loose) == float(paper)


def test_softmax_q_value_limits():
    q = jnp.array([[1.0, 2.0, 6.0], [-3.0, 0.0, 0.5]])
    np.testing.assert_allclose(softmax_q_value(q, 0.0), jnp.mean(q, axis=-1), rtol=1e-6)
    np.testing.assert_allclose(softmax_q_value(q, 1e4), jnp.max(q, axis=-1), rtol=1e-5)
    middle = softmax_q_value(q, 1.0)
    assert np.all(middle > jnp.mean(q, axis=-1)) and np.all(middle < jnp.max(q, axis=-1))


def test_softmax_critic_target_by_hand():
    q_target = QEnsemble(OBS_DIM, ACT_DIM, width=8, depth=1, key=jax.random.key(5))
    key = jax.random.split(jax.random.key(6), 4)
    n, m = 3, 4
    rows = Transitions(
        obs=jax.random.normal(key[0], (n, OBS_DIM)),
        action=jnp.zeros((n, ACT_DIM)),
        reward=jnp.array([1.0, -2.0, 0.5]),
        next_obs=jax.random.normal(key[1], (n, OBS_DIM)),
        terminal=jnp.array([0.0, 1.0, 0.0]),
    )
    candidates = jax.random.uniform(key[2], (n, m, ACT_DIM), minval=-1, maxval=1)
    target = softmax_critic_target(q_target, rows, candidates, beta_q=2.0, discount=0.9)
    for i in range(n):
        qs = np.array([float(jnp.min(q_target(rows.next_obs[i], candidates[i, j]))) for j in range(m)])
        w = np.exp(2.0 * (qs - qs.max()))
        w /= w.sum()
        expected = float(rows.reward[i]) + 0.9 * (1.0 - float(rows.terminal[i])) * float(np.sum(w * qs))
        assert abs(float(target[i]) - expected) < 1e-5


def test_support_weights_sum_to_one_per_state_and_favour_high_q():
    q = jax.random.normal(jax.random.key(7), (5, 17)) * 10.0
    w = qipo.support_weights(q, 3.0)
    np.testing.assert_allclose(jnp.sum(w, axis=-1), np.ones(5), rtol=1e-6)
    assert np.all(jnp.argmax(w, axis=-1) == jnp.argmax(q, axis=-1))
    # beta = 0 is uniform over the set: plain flow matching on the support
    np.testing.assert_allclose(qipo.support_weights(q, 0.0), np.full((5, 17), 1 / 17), rtol=1e-6)


def test_support_weights_split_between_the_policy_and_the_behaviour_draws():
    """[2 policy draws | 2 behaviour draws, dataset action]: half the weight each; the behaviour part at (l + 1) beta."""
    q = jax.random.normal(jax.random.key(3), (4, 5))
    w = np.asarray(qipo.support_weights(q, 2.0, behavior=2, renewal=3.0))
    np.testing.assert_allclose(w[:, :2].sum(-1), 0.5, rtol=1e-6)
    np.testing.assert_allclose(w[:, :2], 0.5 * np.asarray(jax.nn.softmax(2.0 * q[:, :2])), rtol=1e-5)
    np.testing.assert_allclose(w[:, 2:], 0.5 * np.asarray(jax.nn.softmax(8.0 * q[:, 2:])), rtol=1e-5)
    # no policy part: the behaviour part takes all the weight
    np.testing.assert_allclose(qipo.support_weights(q, 2.0, behavior=4), jax.nn.softmax(2.0 * q), rtol=1e-5)
    assert qipo.Config(support_size=16).behavior_support == 8 and qipo.Config(behavior_share=0.0).behavior_support == 0


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_improvement_loss_is_the_per_state_weighted_flow_matching_loss(share):
    """The loss weights each action by `support_weights` within its own state's set: a state's weights ignore other
    states (share 0: the paper's one softmax over the set; else a policy part and a behaviour part)."""
    config = dataclasses.replace(TINY["qipo"], behavior_share=share)
    policy = qipo.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(8)).policy
    q = QEnsemble(OBS_DIM, ACT_DIM, width=8, depth=1, key=jax.random.key(9))
    key = jax.random.split(jax.random.key(10), 3)
    transitions = Transitions(
        obs=jax.random.normal(key[0], (2, OBS_DIM)),
        action=jnp.zeros((2, ACT_DIM)),
        reward=jnp.zeros(2),
        next_obs=jnp.zeros((2, OBS_DIM)),
        terminal=jnp.zeros(2),
    )
    rows = qipo.Pool(
        transitions=transitions,
        support=jax.random.uniform(key[1], (2, 5, ACT_DIM), minval=-1, maxval=1),
        next_candidates=jnp.zeros((2, 0, ACT_DIM)),
    )
    loss, info = eqx.filter_jit(qipo.improvement_loss)(policy, q, rows, config, key=key[2], renewal=2.0)
    # recompute with explicit per-state weights on the same (t, x0) draws (the loss splits `key` into x0, t keys)
    obs = jnp.repeat(rows.transitions.obs, 5, axis=0)
    actions = rows.support.reshape(10, ACT_DIM)
    qsa = min_q(q, obs, actions).reshape(2, 5)
    weights = qipo.support_weights(qsa, config.beta, behavior=config.behavior_support, renewal=2.0)
    if share == 0.0:
        np.testing.assert_allclose(weights, qipo.support_weights(qsa, config.beta), rtol=1e-6)
    weights = np.asarray(weights).reshape(10) / 2
    k0, kt = jax.random.split(key[2])
    x0 = jax.random.normal(k0, actions.shape)
    t = jax.random.uniform(kt, (10,))
    x_t = t[:, None] * actions + (1 - t[:, None]) * x0
    v = jax.vmap(policy)(x_t, t, obs)
    errors = np.sum(np.asarray(v - (actions - x0)) ** 2, axis=-1)
    np.testing.assert_allclose(float(loss), float(np.sum(weights * errors)), rtol=1e-4)
    assert 0.0 < float(info["data_action_weight"]) < 1.0


def test_polyak_update_mixes_arrays_only():
    a = QEnsemble(OBS_DIM, ACT_DIM, width=8, depth=1, key=jax.random.key(11))
    b = QEnsemble(OBS_DIM, ACT_DIM, width=8, depth=1, key=jax.random.key(12))
    mixed = polyak_update(a, b, 0.25)
    leaves = zip(jax.tree.leaves(mixed), jax.tree.leaves(a), jax.tree.leaves(b))
    for m, x, y in leaves:
        if eqx.is_array(m):
            np.testing.assert_allclose(m, 0.75 * x + 0.25 * y, rtol=1e-6)


def test_best_of_n_keeps_the_highest_score():
    obs = jnp.arange(3.0)[:, None] * jnp.ones((3, OBS_DIM))

    def propose(key, s):
        return jax.random.uniform(key, (s.shape[0], ACT_DIM), minval=-1, maxval=1)

    def score(s, a):
        return -jnp.sum((a - 0.3) ** 2, axis=-1)

    chosen = best_of_n(propose, score, obs, num_candidates=64, key=jax.random.key(13))
    candidates = propose(jax.random.key(13), jnp.repeat(obs, 64, axis=0)).reshape(3, 64, ACT_DIM)
    best = jnp.max(-jnp.sum((candidates - 0.3) ** 2, axis=-1), axis=-1)
    np.testing.assert_allclose(score(obs, chosen), best, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5.0, 5.0, width=32), min_size=2 * 4 * 3 + 2, max_size=2 * 4 * 3 + 2))
def test_choose_by_each_selection_rule(flat):
    values = jnp.asarray(flat[:24], dtype=jnp.float32).reshape(2, 4, 3)  # 2 states, 4 candidates, 3 critics
    v = jnp.asarray(flat[24:], dtype=jnp.float32)
    low, first_high = np.min(values, axis=-1), np.max(values[:, 0], axis=-1)
    best = np.argmax(low, axis=-1)
    np.testing.assert_array_equal(choose(values, "max"), best)
    # agreed: the best only where its lowest estimate beats the first candidate's highest
    sure = low[np.arange(2), best] > first_high
    np.testing.assert_array_equal(choose(values, "agreed"), np.where(sure, best, 0))
    # first_above_v: the first candidate whose lowest estimate reaches V(s), else the best
    chosen = np.asarray(choose(values, "first_above_v", state_value=v))
    for i in range(2):
        above = [j for j in range(4) if low[i, j] >= float(v[i])]
        assert chosen[i] == (above[0] if above else best[i])


def test_choose_first_above_v_needs_the_state_values():
    with pytest.raises(ValueError, match="needs the states' values"):
        choose(jnp.zeros((2, 3, 2)), "first_above_v")


def test_mean_selection_averages_the_draws_without_asking_the_critic():
    obs = jnp.zeros((4, OBS_DIM))

    def propose(key, s):
        return jax.random.uniform(key, (s.shape[0], ACT_DIM), minval=-1, maxval=1)

    def score(s, a):
        raise AssertionError("selection='mean' must not call the critic")

    key = jax.random.key(37)
    drawn = propose(key, jnp.repeat(obs, 6, axis=0)).reshape(4, 6, ACT_DIM)
    averaged = best_of_n(propose, score, obs, num_candidates=6, key=key, selection="mean")
    np.testing.assert_allclose(averaged, drawn.mean(axis=1), atol=1e-6)
    # the average of 6 different draws is none of them
    assert not np.any(np.all(np.isclose(np.asarray(averaged)[:, None], np.asarray(drawn)), axis=-1))
    with pytest.raises(ValueError, match="averages the candidates"):
        choose(jnp.zeros((2, 3, 2)), "mean")
    with pytest.raises(ValueError, match="chooses by the critics' values"):
        pick(drawn, None, "max")


def test_best_of_n_agreed_falls_back_to_the_first_draw_where_the_critics_disagree():
    obs = jnp.zeros((5, OBS_DIM))

    def propose(key, s):
        return jax.random.uniform(key, (s.shape[0], ACT_DIM), minval=-1, maxval=1)

    def score(s, a):  # member 0 prefers larger first components, member 1 is that plus a wide spread
        q = a[:, 0]
        return jnp.stack([q, q + 10.0 * a[:, 1]], axis=-1)

    key = jax.random.key(31)
    first = propose(key, jnp.repeat(obs, 6, axis=0)).reshape(5, 6, ACT_DIM)[:, 0]
    greedy = best_of_n(propose, score, obs, num_candidates=6, key=key)
    agreed = best_of_n(propose, score, obs, num_candidates=6, key=key, selection="agreed")
    for i in range(5):
        lo = float(jnp.min(score(None, greedy[i : i + 1])))
        expected = greedy[i] if lo > float(jnp.max(score(None, first[i : i + 1]))) else first[i]
        np.testing.assert_array_equal(agreed[i], expected)
    # a one-column score (a single critic) agrees with itself: agreed is then the plain maximum
    single = best_of_n(propose, lambda s, a: a[:, 0], obs, num_candidates=6, key=key, selection="agreed")
    np.testing.assert_array_equal(single, best_of_n(propose, lambda s, a: a[:, 0], obs, num_candidates=6, key=key))


def test_best_of_n_agreed_mean_keeps_the_draws_average_unless_the_critics_agree_a_draw_beats_it():
    obs = jnp.zeros((64, OBS_DIM))

    def propose(key, s):
        return jax.random.uniform(key, (s.shape[0], ACT_DIM), minval=-1, maxval=1)

    def score(s, a):  # both members prefer actions near 0.2 in the first component; member 1 adds a wide spread
        q = -jnp.abs(a[:, 0] - 0.2)
        return jnp.stack([q, q + 2.0 * a[:, 1]], axis=-1)

    key = jax.random.key(41)
    drawn = propose(key, jnp.repeat(obs, 6, axis=0)).reshape(64, 6, ACT_DIM)
    average = drawn.mean(axis=1)
    greedy = best_of_n(propose, score, obs, num_candidates=6, key=key)
    blended = best_of_n(propose, score, obs, num_candidates=6, key=key, selection="agreed_mean")
    sure = jnp.min(score(None, greedy), axis=-1) > jnp.max(score(None, average), axis=-1)
    # where the best draw beats the average by every member's account, it; else the average (both kinds occur here)
    assert 0 < int(jnp.sum(sure)) < 64, "the check needs states of both kinds"
    np.testing.assert_allclose(blended, jnp.where(sure[:, None], greedy, average), atol=1e-6)
    # with one critic the rule is the plain maximum over the draws and their average: the average where it is best
    single = best_of_n(propose, lambda s, a: score(s, a)[:, 0], obs, num_candidates=6, key=key,
                       selection="agreed_mean")
    candidates = jnp.concatenate([average[:, None], drawn], axis=1)
    values = score(None, candidates.reshape(-1, ACT_DIM))[:, 0].reshape(64, 7)
    np.testing.assert_allclose(single, candidates[jnp.arange(64), jnp.argmax(values, axis=-1)], atol=1e-6)
    assert bool(jnp.any(jnp.argmax(values, axis=-1) == 0)), "the check needs states where the average is best"


# ----------------------------------------------------------------------------------------------------------------------
# FlowQ: the critic is frozen inside the policy loss


@pytest.mark.parametrize("gradient", ["data", "mean"])
def test_flowq_policy_loss_does_not_train_the_critic(batch, gradient):
    config = dataclasses.replace(TINY["flowq"], gradient=gradient)
    state = flowq.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(14))
    critic: IQLCritic = state.critic
    key = jax.random.key(15)
    unit = jnp.ones(())

    def loss_of_critic(parts):
        q, value = parts
        return flowq.policy_loss(state.policy, q, value, batch.obs, batch.action, jnp.ones(()), config, key=key)[0]

    q_grads, v_grads = eqx.filter_jit(eqx.filter_grad(loss_of_critic))((critic.q, critic.value))
    for g in jax.tree.leaves((q_grads, v_grads)):
        assert float(jnp.max(jnp.abs(g))) == 0.0
    # ... while the policy does get a gradient, and the energy does shape the loss
    p_grads = eqx.filter_jit(eqx.filter_grad(
        lambda p: flowq.policy_loss(p, critic.q, critic.value, batch.obs, batch.action, unit, config, key=key)[0]
    ))(state.policy)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(p_grads)) > 0.0
    unguided = dataclasses.replace(config, beta=0.0)
    l0 = flowq.policy_loss(state.policy, critic.q, critic.value, batch.obs, batch.action, unit, unguided, key=key)
    l1 = flowq.policy_loss(state.policy, critic.q, critic.value, batch.obs, batch.action, unit, config, key=key)
    assert float(l0[0]) != float(l1[0])


@pytest.mark.parametrize("gradient", ["data", "mean"])
def test_flowq_weights_in_units_of_q(batch, gradient):
    """weight_unit="q" weights by softmax(temperature A) whatever the energy's unit: with temperature = beta / scale
    it is the energy-unit loss again, with temperature 0 the unweighted one, and the path's beta still guides."""
    base = dataclasses.replace(TINY["flowq"], gradient=gradient, beta=2.0, weight_unit="energy")
    state = flowq.init(base, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(27))
    critic: IQLCritic = state.critic
    # a critic with visibly different advantages, so that the weights matter
    q = jax.tree.map(lambda x: 3.0 * x if eqx.is_inexact_array(x) else x, critic.q)
    scale = jnp.asarray(0.4)

    def loss(config):
        out = flowq.policy_loss(state.policy, q, critic.value, batch.obs, batch.action, scale, config,
                                key=jax.random.key(28))
        return float(out[0])

    in_q = dataclasses.replace(base, weight_unit="q", temperature=2.0 / 0.4)
    np.testing.assert_allclose(loss(in_q), loss(base), rtol=1e-5)
    flat = dataclasses.replace(base, weight_unit="q", temperature=0.0)
    np.testing.assert_allclose(loss(flat), loss(dataclasses.replace(base, weighted=False)), rtol=1e-5)
    assert abs(loss(dataclasses.replace(in_q, temperature=20.0)) - loss(in_q)) > 1e-4 * loss(in_q)
    assert abs(loss(dataclasses.replace(in_q, beta=0.0)) - loss(in_q)) > 1e-4 * loss(in_q)
    # max_weight caps exp(temperature A) as IQL does: a cap above every weight changes nothing, a low one does
    advantage = min_q(q, batch.obs, batch.action) - state_values(critic.value, batch.obs)
    top = float(jnp.exp(in_q.temperature * jnp.max(advantage)))
    np.testing.assert_allclose(loss(dataclasses.replace(in_q, max_weight=2.0 * top)), loss(in_q), rtol=1e-6)
    capped = loss(dataclasses.replace(in_q, max_weight=float(jnp.exp(in_q.temperature * jnp.median(advantage)))))
    assert abs(capped - loss(in_q)) > 1e-4 * loss(in_q)


def test_flowq_resample_and_min_ess_act_on_the_weights(batch):
    """resample = m is energyflow's resampled EFM on FlowQ's endpoint weights softmax(temperature A): the same loss
    as `energy_weighted_loss(..., resample=m)` on the context FlowQ builds (checked with beta = 0, where the guided
    path is plain CondOT and its energy reads only E), and not the weighted loss. min_ess is the weighted loss at
    the lower temperature `energyflow.tempered_beta` finds."""
    base = dataclasses.replace(TINY["flowq"], beta=0.0, weight_unit="q", temperature=2.0)
    state = flowq.init(base, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(33))
    critic: IQLCritic = state.critic
    q = jax.tree.map(lambda x: 3.0 * x if eqx.is_inexact_array(x) else x, critic.q)
    scale, key, m = jnp.asarray(0.4), jax.random.key(34), 3 * len(batch.obs)
    advantage = min_q(q, batch.obs, batch.action) - state_values(critic.value, batch.obs)

    def ours(config):
        return float(flowq.policy_loss(state.policy, q, critic.value, batch.obs, batch.action, scale, config,
                                       key=key)[0])

    context = jnp.concatenate([batch.obs, -advantage[:, None]], axis=1)
    by_hand = energy_weighted_loss(lambda x, t, c: state.policy(x, t, c[:OBS_DIM]), flowq.guidance_path(base),
                                   batch.action, lambda a, c: c[-1], beta=2.0, key=key, context=context, resample=m)
    resampled = dataclasses.replace(base, resample=m)
    np.testing.assert_allclose(ours(resampled), float(by_hand), rtol=1e-5)
    assert abs(ours(resampled) - ours(base)) > 1e-3 * ours(base)

    # min_ess tempers the same weights: the loss at the temperature energyflow.tempered_beta finds on -A
    floor = 0.9
    tempered = tempered_beta(-advantage, 2.0, floor)
    assert float(tempered) < 2.0  # the floor binds on this critic
    by_hand = energy_weighted_loss(lambda x, t, c: state.policy(x, t, c[:OBS_DIM]), flowq.guidance_path(base),
                                   batch.action, lambda a, c: c[-1], beta=tempered, key=key, context=context)
    np.testing.assert_allclose(ours(dataclasses.replace(base, min_ess=floor)), float(by_hand), rtol=1e-5)


def test_flowq_uphill_step_moves_the_targets_and_keeps_the_weights(batch):
    """uphill_step = s regresses on clip(a + s grad_a min Q(s, a) / scale, -1, 1) with the weights of the data actions:
    checked against energyflow's losses on targets shifted by hand (per-example gradients)."""
    base = dataclasses.replace(TINY["flowq"], beta=0.0, weight_unit="q", temperature=2.0)
    state = flowq.init(base, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(31))
    critic: IQLCritic = state.critic
    q = jax.tree.map(lambda x: 3.0 * x if eqx.is_inexact_array(x) else x, critic.q)  # gradients large enough to clip
    scale, key, step = jnp.asarray(0.4), jax.random.key(32), 0.3
    grads = jnp.stack([jax.grad(lambda a, s=s: jnp.min(q(s, a)))(a) for s, a in zip(batch.obs, batch.action)])
    target = jnp.clip(batch.action + step * grads / scale, -1.0, 1.0)
    assert bool(jnp.any(jnp.abs(batch.action + step * grads / scale) > 1.0))  # the clip is exercised
    advantage = min_q(q, batch.obs, batch.action) - state_values(critic.value, batch.obs)
    path = flowq.guidance_path(base)

    def ours(config):
        return float(flowq.policy_loss(state.policy, q, critic.value, batch.obs, batch.action, scale, config,
                                       key=key)[0])

    def by_hand(temperature):  # energy_weighted_loss's weights softmax(-temperature E) = softmax(temperature A)
        context = jnp.concatenate([batch.obs, -advantage[:, None]], axis=1)
        velocity = lambda x, t, c: state.policy(x, t, c[:OBS_DIM])  # noqa: E731
        return float(energy_weighted_loss(velocity, path, target, lambda a, c: c[-1], beta=temperature, key=key,
                                          context=context))

    stepped = dataclasses.replace(base, uphill_step=step)
    np.testing.assert_allclose(ours(stepped), by_hand(2.0), rtol=1e-5)
    np.testing.assert_allclose(ours(dataclasses.replace(stepped, temperature=0.0)), by_hand(0.0), rtol=1e-5)
    assert abs(ours(stepped) - ours(base)) > 1e-3 * ours(base)
    assert abs(by_hand(2.0) - by_hand(0.0)) > 1e-4 * by_hand(0.0)  # the weights matter in this check


def test_flowq_log_partition_loss_is_stationary_at_the_log_mean_exp():
    """At one state, the Gumbel regression's gradient in L vanishes at L = log mean exp(k q) / k (so that the weights
    exp(k (q - L)) average to one there), and pushes L towards it from either side; above the clip its exp continues
    linearly (finite, slope exp(clip))."""
    k, n = 3.0, 64
    q = 0.4 * jax.random.normal(jax.random.key(0), (n,))
    obs = jnp.ones((n, OBS_DIM))
    net = ValueNetwork(OBS_DIM, width=16, depth=1, key=jax.random.key(1))
    raw = float(state_values(net, obs[:1])[0])
    target = float(jax.scipy.special.logsumexp(k * q) - jnp.log(n)) / k
    np.testing.assert_allclose(float(jnp.mean(jnp.exp(k * (q - target)))), 1.0, rtol=1e-5)

    def grad_at(level):  # d loss / d (the output's bias), with the output set to `level`
        shifted = eqx.tree_at(lambda m: m.net.layers[-1].bias, net, net.net.layers[-1].bias + (level - raw))
        grads = eqx.filter_grad(lambda m: critics.log_partition_loss(m, obs, q, temperature=k)[0])(shifted)
        return float(jnp.ravel(grads.net.layers[-1].bias)[0])

    assert abs(grad_at(target)) < 1e-4
    assert grad_at(target - 0.1) < -1e-2 < 1e-2 < grad_at(target + 0.1)  # gradient descent moves L to the target
    assert target > float(jnp.mean(q)) + 0.1  # not the mean: k makes it lean towards the larger q
    far = jnp.asarray([20.0])  # z = k * 20 = 60, far above the clip
    far_loss, _ = critics.log_partition_loss(net, obs[:1], far + raw, temperature=k)
    clip = critics.LOG_PARTITION_CLIP
    np.testing.assert_allclose(float(far_loss), np.exp(clip) * (1 + 60.0 - clip) - 60.0 - 1.0, rtol=1e-5)


def test_flowq_log_partition_baseline_trains_l_and_changes_only_the_policy_weights(batch):
    """weight_baseline="log_partition": the update fits L by its Gumbel regression on the value step's Q and the policy
    loss subtracts L where it subtracted V; the critic's update is untouched, and a checkpoint resumes bit for bit."""
    value_cfg = dataclasses.replace(TINY["flowq"], weight_unit="q", temperature=3.0)
    lp_cfg = dataclasses.replace(value_cfg, weight_baseline="log_partition")
    update = eqx.filter_jit(flowq.update)
    states = {c.weight_baseline: flowq.init(c, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(41))
              for c in (value_cfg, lp_cfg)}
    assert states["value"].log_partition is None
    after = {name: update(state, batch, key=jax.random.key(42)) for name, state in states.items()}
    (lp_new, info), (v_new, _) = after["log_partition"], after["value"]
    assert eqx.tree_equal(lp_new.critic, v_new.critic)  # same critic key and update
    assert not eqx.tree_equal(lp_new.policy, v_new.policy)
    assert not eqx.tree_equal(lp_new.log_partition, states["log_partition"].log_partition)
    q_data = min_q(states["log_partition"].critic.q_target, batch.obs, batch.action)
    expected, _ = critics.log_partition_loss(states["log_partition"].log_partition, batch.obs, q_data, temperature=3.0)
    np.testing.assert_allclose(float(info["log_partition_loss"]), float(expected), rtol=1e-5)
    # the policy's gradient is that of policy_loss with L as the baseline
    old = states["log_partition"]
    grads = eqx.filter_grad(lambda p: flowq.policy_loss(p, old.critic.q_target, lp_new.log_partition, batch.obs,
                                                        batch.action, lp_new.energy_scale, lp_cfg,
                                                        key=jax.random.key(42))[0])(old.policy)
    v_grads = eqx.filter_grad(lambda p: flowq.policy_loss(p, old.critic.q_target, v_new.critic.value, batch.obs,
                                                          batch.action, v_new.energy_scale, value_cfg,
                                                          key=jax.random.key(42))[0])(old.policy)
    optimizer = make_optimizer(lp_cfg.policy.lr)
    expected_policy, _ = apply_gradients(old.policy, old.policy_opt_state, grads, optimizer)
    for got, want in zip(jax.tree.leaves(eqx.filter(lp_new.policy, eqx.is_array)),
                         jax.tree.leaves(eqx.filter(expected_policy, eqx.is_array)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    leaf = lambda g: np.asarray(jax.tree.leaves(eqx.filter(g, eqx.is_array))[0])  # noqa: E731
    assert np.abs(leaf(grads) - leaf(v_grads)).max() > 1e-6  # L and V give different gradients here
    # checkpoint -> resume
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, lp_new)
    buffer.seek(0)
    like = eqx.filter_eval_shape(flowq.init, lp_cfg, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(0))
    restored = eqx.tree_deserialise_leaves(buffer, like)
    a, _ = update(lp_new, batch, key=jax.random.key(43))
    b, _ = update(restored, batch, key=jax.random.key(43))
    assert eqx.tree_equal(a, b)


def test_flowq_energy_unit_is_the_action_gradient_norm_of_q(batch):
    """The first update sets the energy's unit to the batch mean of |grad_a min Q_target(s, a_data)|, so that the
    guided mean moves by at most ~0.15 beta action units whatever the reward scale; Q_target is the target ensemble
    of before the critic's Polyak step (the one the value step used; tau = 0.5 makes the two far apart)."""
    config = dataclasses.replace(TINY["flowq"], critic=dataclasses.replace(CRITIC, tau=0.5))
    state = flowq.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(23))
    state = dataclasses.replace(state, critic=_critic_with_a_distinct_target(config.critic, jax.random.key(25)))
    new, info = eqx.filter_jit(flowq.update)(state, batch, key=jax.random.key(24))
    after = float(jnp.mean(flowq.action_gradient_norm(new.critic.q_target, batch.obs, batch.action)))
    assert abs(after - float(new.energy_scale)) > 1e-3 * after
    q = state.critic.q_target
    by_hand = []
    for i in range(BATCH):
        g = jax.grad(lambda a: jnp.min(q(batch.obs[i], a)))(batch.action[i])
        by_hand.append(float(jnp.linalg.norm(g)))
    np.testing.assert_allclose(float(new.energy_scale), np.mean(by_hand), rtol=1e-4)
    np.testing.assert_allclose(float(info["energy_scale"]), np.mean(by_hand), rtol=1e-4)
    # the unit is invariant to the reward scale: scaling Q by 10 scales the gradient norms by 10 too
    scaled = jax.tree.map(lambda x: x * 10.0 if eqx.is_inexact_array(x) else x, q.nets.layers[-1])
    q10 = eqx.tree_at(lambda m: m.nets.layers[-1], q, scaled)
    norms = [flowq.action_gradient_norm(m, batch.obs, batch.action) for m in (q10, q)]
    ratio = norms[0] / norms[1]
    np.testing.assert_allclose(ratio, np.full(BATCH, 10.0), rtol=1e-4)


@pytest.mark.parametrize("weight_at", ["endpoint", "t"])
@pytest.mark.parametrize("weighted", [True, False])
def test_flowq_policy_loss_data_path_equals_the_energy_evaluated_per_example(batch, weighted, weight_at):
    """With gradient="data" the loss feeds energyflow the first-order expansion of E at the data actions, built from
    batched passes of the critic; it must equal the loss with E evaluated per example through the critic."""
    config = dataclasses.replace(TINY["flowq"], beta=5.0, weighted=weighted, weight_at=weight_at)
    state = flowq.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(26))
    critic = _critic_with_a_distinct_target(config.critic, jax.random.key(27))
    q, value, scale, key = critic.q_target, critic.value, jnp.asarray(0.7), jax.random.key(28)

    def energy(a, s):
        return -(jnp.min(q(s, a)) - value(s)) / scale

    def per_example(policy):
        return energy_guided_loss(policy, flowq.guidance_path(config), batch.action, energy, key=key,
                                  context=batch.obs, weighted=weighted, weight_at=weight_at)

    def batched(policy):
        return flowq.policy_loss(policy, q, value, batch.obs, batch.action, scale, config, key=key)[0]

    np.testing.assert_allclose(float(batched(state.policy)), float(per_example(state.policy)), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(eqx.filter_grad(batched)(state.policy)),
                    jax.tree.leaves(eqx.filter_grad(per_example)(state.policy))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # update's precomputed (Q, grad_a Q) give the same loss
    at_data = flowq.q_and_action_gradient(q, batch.obs, batch.action)
    loss, _ = flowq.policy_loss(state.policy, q, value, batch.obs, batch.action, scale, config, key=key,
                                at_data=at_data)
    np.testing.assert_allclose(float(loss), float(batched(state.policy)), rtol=1e-6)


def test_flowq_policy_reads_the_target_q_of_the_value_step(batch):
    """FlowQ's energy uses the new V and the target Q of before the Polyak step, as IQL's actor does."""
    config = dataclasses.replace(TINY["flowq"], critic=dataclasses.replace(CRITIC, tau=0.5))
    state = flowq.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(29))
    state = dataclasses.replace(state, critic=_critic_with_a_distinct_target(config.critic, jax.random.key(30)))
    key = jax.random.key(31)
    new, info = eqx.filter_jit(flowq.update)(state, batch, key=key)

    def loss_with(q):
        return flowq.policy_loss(state.policy, q, new.critic.value, batch.obs, batch.action, new.energy_scale, config,
                                 key=key)[0]

    np.testing.assert_allclose(float(info["policy_loss"]), float(loss_with(state.critic.q_target)), rtol=1e-5)
    assert abs(float(loss_with(new.critic.q_target)) - float(info["policy_loss"])) > 1e-4


# ----------------------------------------------------------------------------------------------------------------------
# Updates, phases, renewal and acting (on the module-scoped training runs)


def test_update_changes_params_and_diagnostics_are_finite(trained):
    name, _, state0, state, infos, _ = trained
    for key, values in infos.items():
        assert values.shape == (10 * CHUNK,), key
        assert np.all(np.isfinite(values)), key
    assert int(state.step) == 10 * CHUNK
    before = jax.tree.leaves(eqx.filter((state0.policy, state0.critic.q), eqx.is_inexact_array))
    after = jax.tree.leaves(eqx.filter((state.policy, state.critic.q), eqx.is_inexact_array))
    changed = [not np.array_equal(a, b) for a, b in zip(before, after) if a.size > 1]
    assert sum(changed) >= len(changed) - 2, name  # every weight moves (allow fixed embedding tables)


def _policy_loss_on_fixed_draws(name, policy, state, batch):
    """Each agent's policy loss for `policy`, against the critic of `state`, on fixed (t, x0) draws (4 per example)."""
    obs, action = jnp.tile(batch.obs, (4, 1)), jnp.tile(batch.action, (4, 1))
    key = jax.random.key(99)
    if name == "iql":
        return iql.actor_loss(policy, state.critic, obs, action, state.config)[0]
    if name == "flowq":
        critic = state.critic
        loss, _ = flowq.policy_loss(
            policy, critic.q_target, critic.value, obs, action, state.energy_scale, state.config, key=key
        )
        return loss
    return qipo.improvement_loss(policy, state.critic.q_target, state.pool, state.config, key=key)[0]


def test_each_agent_reduces_its_losses_on_a_fixed_batch(trained, batch):
    """Fixed batch and seeds. Critic: the mean Q loss of the last 20 updates is below 0.8x that of the first 20 (the
    observed drop is far larger). Policy: the trained policy's loss is below 0.9x the initial policy's, both measured
    against the final critic on the same fixed draws of (t, x0), so the noise of flow matching cancels out.
    """
    name, _, state0, state, infos, _ = trained
    first, last = float(np.mean(infos["q_loss"][:20])), float(np.mean(infos["q_loss"][-20:]))
    assert last < 0.8 * first, (name, first, last)
    loss_fn = eqx.filter_jit(functools.partial(_policy_loss_on_fixed_draws, name))
    before = float(loss_fn(state0.policy, state, batch))
    after = float(loss_fn(state.policy, state, batch))
    assert after < before - 0.1 * abs(before), (name, before, after)


def _arrays(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


def test_qipo_phases_and_behaviour_freeze(batch):
    config = TINY["qipo"]
    state = qipo.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(16))
    run = _make_runner(qipo)
    warm, (info_warm, _) = run(state, batch, jax.random.key(17))  # exactly the warm-up (CHUNK = warmup_steps)
    assert np.all(np.asarray(info_warm["improving"]) == 0.0)
    for p, b in zip(_arrays(warm.policy), _arrays(warm.behavior)):
        np.testing.assert_array_equal(p, b)  # the behaviour flow follows the policy during the warm-up
    improved, (info_imp, _) = run(warm, batch, jax.random.key(18))
    assert np.all(np.asarray(info_imp["improving"]) == 1.0)
    for b0, b1 in zip(_arrays(warm.behavior), _arrays(improved.behavior)):
        np.testing.assert_array_equal(b0, b1)  # ... and is frozen afterwards
    moved = [
        not np.array_equal(p, b)
        for p, b in zip(_arrays(improved.policy), _arrays(improved.behavior))
        if p.size > 1
    ]
    assert any(moved)


@pytest.mark.parametrize("trained", ["qipo"], indirect=True)
def test_qipo_support_rows_are_renewed_exactly_every_k_renew_updates(trained):
    _, _, _, _, _, probes = trained
    config = TINY["qipo"]
    k, w = config.renew_every, config.pool_writes
    support = np.concatenate(probes)  # [steps, P, M + 1, act_dim]; support[i] is the pool after update i
    # support sets are drawn from update warmup_steps - renew_every on (earlier ones would never be read): before
    # that the drawn part of every row is still empty
    first = config.warmup_steps - k
    assert first >= 1
    np.testing.assert_array_equal(support[first - 1, :, :-1], 0.0)
    for step in range(first, support.shape[0]):
        changed_rows = np.any(support[step] != support[step - 1], axis=(1, 2))
        block = step % k
        expected = np.zeros(config.pool_size, bool)
        expected[block * w : (block + 1) * w] = True
        np.testing.assert_array_equal(changed_rows, expected, err_msg=f"update {step}")
    # the first block (rows written at multiples of K_renew) changes exactly at those updates
    block0 = np.any(support[first:, :w] != support[first - 1 : -1, :w], axis=(1, 2, 3))
    np.testing.assert_array_equal(np.nonzero(block0)[0] + first, np.arange(-(-first // k) * k, support.shape[0], k))
    # the last column of every support set is the dataset action of its row's transition
    assert np.all(np.abs(support[-1, :, -1, :]) < 1.0)


def test_act_shapes_and_range(trained):
    name, module, _, state, _, _ = trained
    obs = 3.0 * jax.random.normal(jax.random.key(19), (7, OBS_DIM))
    actions = eqx.filter_jit(module.act)(state, obs, key=jax.random.key(20))
    assert actions.shape == (7, ACT_DIM)
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0)
    if name != "iql":
        policy = dataclasses.replace(state.config.policy, best_of_n=5)
        picky = dataclasses.replace(state, config=dataclasses.replace(state.config, policy=policy))
        chosen = module.act(picky, obs, key=jax.random.key(20))
        assert chosen.shape == (7, ACT_DIM) and np.all(np.abs(chosen) <= 1.0)
        # best-of-5 by Q never picks a worse action than a single draw from the same first candidates on average
        q_one = min_q(state.critic.q, obs, module.act(state, obs, key=jax.random.key(21)))
        q_best = min_q(state.critic.q, obs, chosen)
        assert float(jnp.mean(q_best)) >= float(jnp.mean(q_one)) - 1e-6
        # agreed: per state, the same choice where both critics rate it above the first draw, else the first draw
        agreed = dataclasses.replace(picky, config=dataclasses.replace(
            picky.config, policy=dataclasses.replace(policy, selection="agreed")))
        kept = module.act(agreed, obs, key=jax.random.key(20))
        config = state.config.policy
        first = sample_flow_actions(state.policy, jnp.repeat(obs, 5, axis=0), key=jax.random.key(20),
                                    steps=config.sample_steps, solver=config.solver).reshape(7, 5, ACT_DIM)[:, 0]
        sure = min_q(state.critic.q, obs, chosen) > jnp.max(q_values(state.critic.q, obs, first), axis=-1)
        np.testing.assert_allclose(kept, jnp.where(sure[:, None], chosen, first), atol=1e-6)
        # mean: the average of the same five draws (no critic asked)
        averaged = dataclasses.replace(picky, config=dataclasses.replace(
            picky.config, policy=dataclasses.replace(policy, selection="mean")))
        five = sample_flow_actions(state.policy, jnp.repeat(obs, 5, axis=0), key=jax.random.key(20),
                                   steps=config.sample_steps, solver=config.solver).reshape(7, 5, ACT_DIM)
        np.testing.assert_allclose(module.act(averaged, obs, key=jax.random.key(20)), five.mean(axis=1), atol=1e-6)
        # agreed_mean: the best of the same five where both critics rate it above their average, else the average
        blended = dataclasses.replace(picky, config=dataclasses.replace(
            picky.config, policy=dataclasses.replace(policy, selection="agreed_mean")))
        average = five.mean(axis=1)
        sure = min_q(state.critic.q, obs, chosen) > jnp.max(q_values(state.critic.q, obs, average), axis=-1)
        np.testing.assert_allclose(module.act(blended, obs, key=jax.random.key(20)),
                                   jnp.where(sure[:, None], chosen, average), atol=1e-6)
    if name == "flowq":  # first_above_v needs V(s), which the tests' QIPO (its softmax critic) does not have
        # per state, the first of the same candidates whose min Q reaches V(s), else the best
        satisfied = dataclasses.replace(picky, config=dataclasses.replace(
            picky.config, policy=dataclasses.replace(policy, selection="first_above_v")))
        drawn = sample_flow_actions(state.policy, jnp.repeat(obs, 5, axis=0), key=jax.random.key(20),
                                    steps=config.sample_steps, solver=config.solver)
        low = min_q(state.critic.q, jnp.repeat(obs, 5, axis=0), drawn).reshape(7, 5)
        reached = low >= state_values(state.critic.value, obs)[:, None]
        index = jnp.where(jnp.any(reached, axis=-1), jnp.argmax(reached, axis=-1), jnp.argmax(low, axis=-1))
        assert bool(jnp.any(index != jnp.argmax(low, axis=-1))), "the check needs a state where the rules differ"
        expected = drawn.reshape(7, 5, ACT_DIM)[jnp.arange(7), index]
        np.testing.assert_allclose(module.act(satisfied, obs, key=jax.random.key(20)), expected, atol=1e-6)


def test_act_noise_scales_the_start_of_the_flow(trained):
    name, module, _, state, _, _ = trained
    if name == "iql":
        pytest.skip("the Gaussian policy has no flow")
    obs = jax.random.normal(jax.random.key(23), (6, OBS_DIM))

    def with_noise(noise):
        policy = dataclasses.replace(state.config.policy, noise=noise)
        return dataclasses.replace(state, config=dataclasses.replace(state.config, policy=policy))

    # noise 1 is a plain sample of the flow: the energyflow sampler from its own N(0, I) draw of the same key
    plain = module.act(state, obs, key=jax.random.key(24))
    drawn = energyflow.sample(state.policy, jax.random.key(24), 6, context=obs, steps=state.config.policy.sample_steps)
    np.testing.assert_array_equal(plain, jnp.clip(drawn, -1.0, 1.0))
    # noise 0: one deterministic action per state, the flow's image of the origin, whatever the key
    a = module.act(with_noise(0.0), obs, key=jax.random.key(25))
    b = module.act(with_noise(0.0), obs, key=jax.random.key(26))
    np.testing.assert_array_equal(a, b)
    origin = energyflow.sample(state.policy, None, jnp.zeros((6, ACT_DIM)), context=obs,
                               steps=state.config.policy.sample_steps)
    np.testing.assert_allclose(a, jnp.clip(origin, -1.0, 1.0), atol=1e-6)
    # noise 0.5 starts from half the same draw
    half = module.act(with_noise(0.5), obs, key=jax.random.key(24))
    start = 0.5 * jax.random.normal(jax.random.key(24), (6, ACT_DIM))
    expected = energyflow.sample(state.policy, None, start, context=obs, steps=state.config.policy.sample_steps)
    np.testing.assert_allclose(half, jnp.clip(expected, -1.0, 1.0), atol=1e-6)


def test_iql_best_of_n_keeps_the_mean_or_a_better_draw(trained):
    name, module, _, state, _, _ = trained
    if name != "iql":
        pytest.skip("IQL's own best-of-N (the flows' is tested above)")
    obs = jax.random.normal(jax.random.key(29), (9, OBS_DIM))
    means = module.act(state, obs, key=jax.random.key(30))
    policy = dataclasses.replace(state.config.policy, best_of_n=16)
    picky = dataclasses.replace(state, config=dataclasses.replace(state.config, policy=policy))
    chosen = module.act(picky, obs, key=jax.random.key(30))
    q_mean, q_chosen = min_q(state.critic.q, obs, means), min_q(state.critic.q, obs, chosen)
    assert np.all(np.asarray(q_chosen) >= np.asarray(q_mean) - 1e-6)
    assert np.any(np.asarray(q_chosen) > np.asarray(q_mean) + 1e-6)  # some draw beats the mean somewhere
    assert np.all(np.abs(chosen) <= 1.0)
    # every chosen action is the mean or within a few standard deviations of it
    std = jnp.exp(jnp.clip(state.policy.log_std, -5.0, 2.0))
    assert np.all(np.abs(np.asarray(chosen - means)) <= 6.0 * np.asarray(std)[None, :] + 1e-6)
    # noise scales the draws' deviation from the mean: the same normals, half as far (where no clip binds)
    def with_noise(noise):
        return dataclasses.replace(picky, config=dataclasses.replace(
            picky.config, policy=dataclasses.replace(policy, noise=noise)))
    z = jax.random.normal(jax.random.key(30), (9, 15, ACT_DIM))
    for noise in (1.0, 0.5):
        draws = jnp.clip(means[:, None, :] + noise * std[None, None, :] * z, -1.0, 1.0)
        best = jnp.argmax(min_q(state.critic.q, jnp.repeat(obs, 15, axis=0), draws.reshape(-1, ACT_DIM))
                          .reshape(9, 15), axis=-1)
        q_best = min_q(state.critic.q, obs, draws[jnp.arange(9), best])
        expected = jnp.where((q_best > q_mean)[:, None], draws[jnp.arange(9), best], means)
        np.testing.assert_allclose(module.act(with_noise(noise), obs, key=jax.random.key(30)), expected, atol=1e-6)
    # mean: the Gaussian's mean itself, whatever the key (the average of its draws without their noise)
    mean_rule = dataclasses.replace(picky, config=dataclasses.replace(
        picky.config, policy=dataclasses.replace(policy, selection="mean")))
    np.testing.assert_array_equal(module.act(mean_rule, obs, key=jax.random.key(33)), means)
    # agreed: a draw replaces the mean only where both critics rate it above the mean's higher estimate (on more
    # states, so that both cases occur)
    agreed = dataclasses.replace(picky, config=dataclasses.replace(
        picky.config, policy=dataclasses.replace(policy, selection="agreed")))
    obs = 2.0 * jax.random.normal(jax.random.key(31), (200, OBS_DIM))
    means, chosen = module.act(state, obs, key=jax.random.key(32)), module.act(picky, obs, key=jax.random.key(32))
    sure = min_q(state.critic.q, obs, chosen) > jnp.max(q_values(state.critic.q, obs, means), axis=-1)
    assert 0 < int(jnp.sum(sure)) < 200, "the check needs states of both kinds"
    expected = jnp.where(sure[:, None], chosen, means)
    np.testing.assert_allclose(module.act(agreed, obs, key=jax.random.key(32)), expected, atol=1e-6)
    # agreed_mean is the same rule for IQL: its first candidate is its mean already
    blended = dataclasses.replace(picky, config=dataclasses.replace(
        picky.config, policy=dataclasses.replace(policy, selection="agreed_mean")))
    np.testing.assert_array_equal(module.act(blended, obs, key=jax.random.key(32)),
                                  module.act(agreed, obs, key=jax.random.key(32)))
    # first_above_v: the mean where its min Q reaches V(s) (in both kinds of states here), else the first draw that
    # does, else the best
    satisfied = dataclasses.replace(picky, config=dataclasses.replace(
        picky.config, policy=dataclasses.replace(policy, selection="first_above_v")))
    mean_ok = min_q(state.critic.q, obs, means) >= state_values(state.critic.value, obs)
    assert 0 < int(jnp.sum(mean_ok)) < 200, "the check needs states of both kinds"
    z = jax.random.normal(jax.random.key(32), (200, 15, ACT_DIM))
    draws = jnp.concatenate([means[:, None], jnp.clip(means[:, None, :] + std[None, None, :] * z, -1.0, 1.0)], axis=1)
    low = min_q(state.critic.q, jnp.repeat(obs, 16, axis=0), draws.reshape(-1, ACT_DIM)).reshape(200, 16)
    reached = low >= state_values(state.critic.value, obs)[:, None]
    index = jnp.where(jnp.any(reached, axis=-1), jnp.argmax(reached, axis=-1), jnp.argmax(low, axis=-1))
    np.testing.assert_allclose(module.act(satisfied, obs, key=jax.random.key(32)), draws[jnp.arange(200), index],
                               atol=1e-6)
    with pytest.raises(ValueError, match="needs noise > 0"):
        dataclasses.replace(policy, noise=0.0)


def test_iql_deterministic_policy_regresses_on_dataset_actions(batch):
    policy = dataclasses.replace(TINY["iql"].policy, kind="deterministic")
    config = dataclasses.replace(TINY["iql"], policy=policy, temperature=0.0)
    state = iql.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(22))
    loss0, _ = iql.actor_loss(state.policy, state.critic, batch.obs, batch.action, config)
    mse0 = float(jnp.mean(jnp.sum((iql.act(state, batch.obs, key=jax.random.key(0)) - batch.action) ** 2, axis=-1)))
    # with temperature 0 all weights are 1: the loss is the plain squared error
    np.testing.assert_allclose(float(loss0), mse0, rtol=1e-5)


def _leaves_of_type(tree, kind):
    return [x for x in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, kind)) if isinstance(x, kind)]


def test_critic_layer_norm_is_off_by_default_and_keeps_the_linear_weights():
    assert IQLCriticConfig().layer_norm is False
    plain = init_iql_critic(CRITIC, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(30))
    normed = init_iql_critic(
        dataclasses.replace(CRITIC, layer_norm=True), obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(30)
    )
    assert not _leaves_of_type(plain, eqx.nn.LayerNorm)
    assert isinstance(normed.q.nets, LayerNormMLP) and isinstance(normed.value.net, LayerNormMLP)
    # one LayerNorm per hidden layer, in Q (stacked over the ensemble), its target, and V
    assert len(_leaves_of_type((normed.q, normed.q_target, normed.value), eqx.nn.LayerNorm)) == 3 * CRITIC.depth
    assert normed.q.nets.norms[0].weight.shape == (CRITIC.num_q, CRITIC.width)
    # the same key gives the same linear layers: the two settings differ only by the normalisation
    for a, b in zip(jax.tree.leaves(plain.q.nets), jax.tree.leaves(normed.q.nets.mlp)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    obs, action = make_batch(jax.random.key(31)).obs, make_batch(jax.random.key(31)).action
    assert not np.allclose(min_q(plain.q, obs, action), min_q(normed.q, obs, action))


def test_layer_norm_mlp_normalises_every_hidden_layer():
    net = LayerNormMLP(OBS_DIM, "scalar", width=16, depth=3, key=jax.random.key(32))
    x = 5.0 * jax.random.normal(jax.random.key(33), (OBS_DIM,))
    h = x
    for layer, norm in zip(net.mlp.layers[:-1], net.norms):
        h = norm(jax.nn.relu(layer(h)))
        # fresh LayerNorms: zero mean and unit variance across the hidden units (eps 1e-5)
        np.testing.assert_allclose(float(jnp.mean(h)), 0.0, atol=1e-5)
        np.testing.assert_allclose(float(jnp.var(h)), 1.0, atol=1e-3)
    np.testing.assert_allclose(float(net(x)), float(net.mlp.layers[-1](h)), rtol=1e-6)
    # ReLU then LayerNorm is invariant to a positive rescaling of the first layer (the plain MLP is not)
    scaled = eqx.tree_at(lambda n: (n.mlp.layers[0].weight, n.mlp.layers[0].bias), net,
                         replace_fn=lambda w: 7.0 * w)
    np.testing.assert_allclose(float(scaled(x)), float(net(x)), rtol=1e-4)
    assert not np.isclose(float(scaled.mlp(x)), float(net.mlp(x)), rtol=1e-2)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_batched_evaluations_equal_the_per_example_networks(layer_norm):
    """`q_values`, `state_values` and `batch_apply` run the networks on the whole batch as matrix products; they
    compute what calling each network on one example does (up to float rounding), for every ensemble member."""
    k = jax.random.split(jax.random.key(42), 5)
    obs, action = jax.random.normal(k[0], (16, OBS_DIM)), jax.random.normal(k[1], (16, ACT_DIM))
    q = QEnsemble(OBS_DIM, ACT_DIM, width=16, depth=3, num_q=3, layer_norm=layer_norm, key=k[2])
    q = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(k[4], x.shape) if eqx.is_inexact_array(x) else x, q)
    value = ValueNetwork(OBS_DIM, width=16, depth=2, layer_norm=layer_norm, key=k[3])
    net = mlp(OBS_DIM, ACT_DIM, width=16, depth=2, layer_norm=layer_norm, key=k[3])
    assert q_values(q, obs, action).shape == (16, 3)
    np.testing.assert_allclose(q_values(q, obs, action), jax.vmap(q)(obs, action), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state_values(value, obs), jax.vmap(value)(obs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch_apply(net, obs), jax.vmap(net)(obs), rtol=1e-5, atol=1e-5)


def test_softmax_critic_and_value_network_take_layer_norm():
    critic = init_softmax_critic(
        dataclasses.replace(CRITIC, layer_norm=True), obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(34)
    )
    assert isinstance(critic.q.nets, LayerNormMLP) and isinstance(critic.q_target.nets, LayerNormMLP)
    value = ValueNetwork(OBS_DIM, width=8, depth=2, layer_norm=True, key=jax.random.key(35))
    assert value(jnp.ones(OBS_DIM)).shape == ()


def test_iql_with_layer_norm_and_actor_decay_trains_then_freezes_the_actor(batch):
    decay = 2 * CHUNK
    config = dataclasses.replace(
        TINY["iql"],
        critic=dataclasses.replace(CRITIC, layer_norm=True),
        policy=dataclasses.replace(TINY["iql"].policy, decay_steps=decay),
    )
    state0 = iql.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(36))
    run = _make_runner(iql)
    state1, (info, _) = run(state0, batch, jax.random.key(37))
    state2, _ = run(state1, batch, jax.random.key(38))  # the cosine schedule reaches lr 0 at update `decay`
    state3, (info3, _) = run(state2, batch, jax.random.key(39))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in (*info.values(), *info3.values()))
    assert info["value_loss"][-1] < info["value_loss"][0]
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                         eqx.filter(state0.policy, eqx.is_array),
                                         eqx.filter(state1.policy, eqx.is_array)))
    assert max(moved) > 1e-4
    # after `decay` updates the actor's learning rate is 0: it no longer moves, while the critic still learns
    for a, b in zip(jax.tree.leaves(eqx.filter(state2.policy, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(state3.policy, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(state2.critic.value.net.norms[0].weight),
                              np.asarray(state3.critic.value.net.norms[0].weight))


# ----------------------------------------------------------------------------------------------------------------------
# Errors at the boundary


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: IQLCriticConfig(expectile=1.5), r"IQLCriticConfig: expectile must be in \(0, 1\), got 1.5"),
        (lambda: IQLCriticConfig(tau=0.0), r"tau must be in \(0, 1\]"),
        (lambda: IQLCriticConfig(width=0), "width must be >= 1, got 0"),
        (lambda: GaussianPolicyConfig(log_std_min=1.0, log_std_max=0.0), "log_std_max must be > log_std_min"),
        (lambda: FlowPolicyConfig(best_of_n=0), "best_of_n must be >= 1"),
        (lambda: FlowPolicyConfig(noise=-0.5), "noise must be >= 0"),
        (lambda: FlowPolicyConfig(best_of_n=4, noise=0.0), "best_of_n=4 needs noise > 0"),
        (lambda: GaussianPolicyConfig(kind="deterministic", best_of_n=2), "best_of_n=2 needs kind='gaussian'"),
        (lambda: qipo.Config(critic_loss="softmax", policy=FlowPolicyConfig(selection="first_above_v")),
         "needs a state value V"),
        (lambda: flowq.Config(beta=-1.0), "beta must be >= 0"),
        (lambda: flowq.Config(sigma_min=1.0), r"sigma_min must be in \[0, 1\)"),
        (lambda: flowq.Config(temperature=-1.0), "temperature must be >= 0"),
        (lambda: flowq.Config(weight_unit="q", weighted=False), "weight_unit='q' .* needs weighted=True"),
        (lambda: flowq.Config(weight_unit="q", weight_at="t"), "weight_at='endpoint'; got weighted=True"),
        (lambda: flowq.Config(max_weight=0.0), "max_weight must be None or > 0, got 0.0"),
        (lambda: flowq.Config(weight_unit="energy", max_weight=100.0), "max_weight=100.0 caps the q unit's weights"),
        (lambda: flowq.Config(uphill_step=-0.1), "uphill_step must be >= 0"),
        (lambda: flowq.Config(resample=0), "resample must be None or an integer >= 1"),
        (lambda: flowq.Config(min_ess=0.0), r"min_ess must be None or in \(0, 1\]"),
        (lambda: iql.Config(min_ess=1.5), r"iql.Config: min_ess must be None or in \(0, 1\], got 1.5"),
        (lambda: flowq.Config(weight_unit="energy", min_ess=0.5), "min_ess=0.5 tempers the q unit's weights"),
        (lambda: flowq.Config(weight_unit="energy", min_ess=None, resample=256),
         "resample=256 draws by the q unit's weights"),
        (lambda: flowq.Config(weight_unit="energy", weight_baseline="log_partition"),
         "weight_baseline='log_partition' sets the q unit's weights; it needs weight_unit='q'"),
        (lambda: flowq.Config(uphill_step=0.1, gradient="mean"), "uphill_step=0.1 .* needs gradient='data'"),
        (lambda: qipo.Config(pool_size=1000, renew_every=300), "pool_size must be a multiple of renew_every=300"),
    ],
)
def test_config_errors_say_what_was_expected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: GaussianPolicyConfig(kind="beta"), "kind"),
        (lambda: FlowPolicyConfig(solver="rk4"), "solver"),
        (lambda: FlowPolicyConfig(selection="best"), "selection"),
        (lambda: GaussianPolicyConfig(selection="agree"), "selection"),
        (lambda: flowq.Config(gradient="both"), "gradient"),
        (lambda: flowq.Config(weight_at="start"), "weight_at"),
        (lambda: flowq.Config(lambda_schedule="cosine"), "lambda_schedule"),
        (lambda: qipo.Config(critic_loss="sarsa"), "critic_loss"),
        (lambda: qipo.Config(critic="softmax"), "critic"),
        (lambda: iql.Config(policy="deterministic"), "policy"),
    ],
)
def test_config_rejects_wrong_choices_and_types(make, field):
    """`validate` names the field (ValueError); under the test suite's jaxtyping hook the annotations are checked
    first, at the dataclass's `__init__` (TypeError). Either way the field is named."""
    with pytest.raises((ValueError, TypeError), match=field):
        make()


def test_config_errors_list_every_problem_at_once():
    with pytest.raises(ValueError, match="beta must be >= 0, got -1.0; scale_rate must be in") as info:
        flowq.Config(beta=-1.0, scale_rate=0.0, weight_at="t")
    assert "weight_at" not in str(info.value)


@dataclasses.dataclass(frozen=True)
class _Part:
    # a nested part
    size: int = 1


@dataclasses.dataclass(frozen=True)
class _Settings:
    """A config outside `rl`, so that the test suite's jaxtyping hook leaves its `__init__` to `validate` alone."""

    # a float
    rate: float = 0.5
    # an int
    count: int = 2
    # a flag
    flag: bool = True
    # a choice
    mode: Literal["a", "b"] = "a"
    # a nested config
    part: _Part = dataclasses.field(default_factory=_Part)

    def __post_init__(self):
        validate(self, {"rate": between(0.0, 1.0), "count": at_least(1)})


def test_validate_converts_numbers_to_the_annotated_type():
    """`--agent.beta=3` may arrive as an int: float fields store a float (the same compiled update), ints an int."""
    settings = _Settings(rate=1, count=np.int64(3), flag=np.bool_(False))
    assert type(settings.rate) is float and settings.rate == 1.0
    assert type(settings.count) is int and settings.count == 3
    assert settings.flag is False
    assert settings == _Settings(rate=1.0, count=3, flag=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": "0.5"}, "rate must be a float, got '0.5'"),
        ({"rate": True}, "rate must be a float, got True"),
        ({"rate": 2.0}, r"rate must be in \[0, 1\], got 2.0"),
        ({"count": 2.5}, "count must be an int, got 2.5"),
        ({"count": 0}, "count must be >= 1, got 0"),
        ({"flag": 1}, "flag must be a bool, got 1"),
        ({"mode": "c"}, "mode must be one of 'a', 'b', got 'c'"),
        ({"part": {"size": 2}}, "part must be an instance of test_agents._Part"),
    ],
)
def test_validate_says_what_was_expected_and_what_arrived(changes, message):
    with pytest.raises(ValueError, match=message):
        _Settings(**changes)


def test_validate_lists_every_problem_and_skips_value_rules_of_mistyped_fields():
    with pytest.raises(ValueError, match=r"invalid test_agents._Settings: rate must be a float, got 'x'; count must"):
        _Settings(rate="x", count=0)


def test_flow_agents_share_one_act():
    assert flowq.act is qipo.act


@pytest.mark.parametrize("module", [iql, flowq, qipo])
def test_renamed_covers_every_old_flat_field(module):
    """Every field of the old flat configs has a hint: the reward transform moved to the data layer, the critic's and
    the flow policy's settings into nested configs, FlowQ's schedule to the rl-wide names."""
    old = {
        iql: "discount expectile temperature max_weight policy lr actor_decay_steps polyak width depth num_q "
        "log_std_min log_std_max reward_scale reward_bias",
        flowq: "discount expectile lr polyak critic_width critic_depth num_q policy_width policy_depth beta schedule "
        "schedule_power gradient weighted weight_at sigma_min normalize_energy scale_rate sample_steps solver "
        "best_of_n reward_scale reward_bias",
        qipo: "discount lr polyak critic_width critic_depth num_q policy_width policy_depth warmup_steps critic beta_q "
        "critic_candidates expectile beta support_size renew_every pool_size policy_batch support_steps sigma_min "
        "sample_steps solver best_of_n reward_scale reward_bias",
    }[module].split()
    fields = {f.name: getattr(module.Config(), f.name) for f in dataclasses.fields(module.Config)}
    for name in old:
        assert (name in fields and not dataclasses.is_dataclass(fields[name])) or name in module.RENAMED, name
    assert module.RENAMED["reward_scale"] == "data.reward_scale"
    assert module.RENAMED["reward_bias"] == "data.reward_bias"
    assert module.RENAMED["polyak"] == "critic.tau"


def test_init_rejects_a_foreign_config_and_empty_sizes():
    with pytest.raises(TypeError, match="rl.agents.qipo.Config"):
        qipo.init(flowq.Config(), obs_dim=3, act_dim=2, key=jax.random.key(0))
    # the check every init makes (the test suite's jaxtyping hook may reject the call above even before it)
    with pytest.raises(TypeError, match="expected an rl.agents.qipo.Config, got rl.agents.flowq.Config"):
        check_init(flowq.Config(), qipo.Config, obs_dim=3, act_dim=2)
    with pytest.raises(ValueError, match="obs_dim and act_dim must be ints >= 1, got obs_dim=0"):
        iql.init(iql.Config(), obs_dim=0, act_dim=2, key=jax.random.key(0))


def test_qipo_needs_enough_batch_rows_for_its_pool_writes():
    config = dataclasses.replace(TINY["qipo"], pool_size=64, renew_every=1)
    state = qipo.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(0))
    with pytest.raises(ValueError, match="pool rows per update"):
        qipo.update(state, make_batch(jax.random.key(1), n=8), key=jax.random.key(2))
