"""Watching the pair: the Notifier and its links, the PrimaryMonitor and ModuleMonitor actors and their pure decision logic, the network check."""
