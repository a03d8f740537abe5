"""Roles of a node: the state table, the node supervisor that carries out its actions, the VirtualSwitch negotiation on 3633, hooks, history and generation."""
