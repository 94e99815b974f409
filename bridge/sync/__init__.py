"""The sync engine: a pure decision per object (``decide``) and an executor (``engine``) that
applies decisions through a :class:`bridge.targets.base.Target`. Nothing here knows Google."""
