"""Offline reinforcement learning on top of `energyflow`: FlowQ, QIPO and an IQL baseline."""
