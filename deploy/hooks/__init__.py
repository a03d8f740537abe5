"""Hooks shipped with switchover (see README.md here): copy them into <hooks dir>/commence.d and discontinue.d."""
