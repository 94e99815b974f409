"""What a sync run did, as the CLI prints it and the HTTP endpoint answers it.

Exit codes (the CLI's status, the HTTP answer's ``exit_code``): 0 every run finished,
3 finished but items were skipped, 1 a run stopped (or could not start).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

EXIT_OK = 0
EXIT_STOPPED = 1
EXIT_SKIPPED = 3
_SEVERITY = {EXIT_OK: 0, EXIT_SKIPPED: 1, EXIT_STOPPED: 2}


@dataclass
class SideCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass
class Conflict:
    uid: str
    summary: str
    winner: str                  # "gestan" or the target's name
    change: str                  # what the winner did: create / update / delete
    losing_ics: str | None = None


@dataclass
class RunReport:
    user: str
    target: str
    direction: str               # open / close
    dry_run: bool = False
    status: str = "ok"           # ok / stopped / failed
    message: str = ""
    gestan: SideCounts = field(default_factory=SideCounts)
    remote: SideCounts = field(default_factory=SideCounts)
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (uid, reason)
    requests: int = 0
    run_id: int | None = None    # None: the run never started (nothing recorded)
    # dry run only: what would be done, one line each
    planned: list[str] = field(default_factory=list)

    def side(self, name: str) -> SideCounts:
        return self.gestan if name == "gestan" else self.remote

    def count(self, side: str, change: str) -> None:
        """One more ``change`` (create / update / delete) on ``side``."""
        counts = self.side(side)
        name = change + "d"
        setattr(counts, name, getattr(counts, name) + 1)

    @property
    def exit_code(self) -> int:
        """0 finished, 3 finished but items were skipped, 1 stopped or failed."""
        if self.status != "ok":
            return EXIT_STOPPED
        return EXIT_SKIPPED if self.skipped else EXIT_OK

    def counts(self) -> dict:
        """The counts stored with the run (the same keys whatever the target)."""
        return {"gestan": asdict(self.gestan), "remote": asdict(self.remote),
                "conflicts": len(self.conflicts), "skipped": len(self.skipped),
                "requests": self.requests}

    def to_dict(self) -> dict:
        """The report as JSON: the same keys whatever the target (``target`` names it)."""
        return {
            "run_id": self.run_id, "user": self.user, "target": self.target,
            "direction": self.direction, "dry_run": self.dry_run, "status": self.status,
            "exit_code": self.exit_code, "message": self.message,
            "gestan": asdict(self.gestan), "remote": asdict(self.remote),
            "conflicts": [{"uid": c.uid, "summary": c.summary, "winner": c.winner,
                           "change": c.change} for c in self.conflicts],
            "skipped": [{"uid": u, "reason": r} for u, r in self.skipped],
            "requests": self.requests, "planned": self.planned,
        }

    def lines(self) -> list[str]:
        g, r = self.gestan, self.remote
        head = f"{self.direction} {self.user} ⇄ {self.target}" + (" (dry run)" if self.dry_run
                                                                  else "")
        out = [f"{head}: {self.status}" + (f" — {self.message}" if self.message else "")]
        out += [f"  would {line}" for line in self.planned]
        out.append(f"  gestan: {g.created} created, {g.updated} updated, {g.deleted} deleted")
        out.append(f"  {self.target}: {r.created} created, {r.updated} updated, "
                   f"{r.deleted} deleted")
        out.append(f"  conflicts: {len(self.conflicts)}, skipped: {len(self.skipped)}, "
                   f"requests: {self.requests}")
        out += [f"  conflict {c.uid} ({c.summary}): {c.winner} won ({c.change}), the other "
                f"version is in the log" for c in self.conflicts]
        out += [f"  skipped {uid}: {reason}" for uid, reason in self.skipped]
        return out


def stored_counts(counts: dict, target: str) -> tuple[dict, dict]:
    """(gestan, remote) counts of a stored run: ``remote`` since the fixed shape, before it a
    key named after the target."""
    return counts.get("gestan") or {}, counts.get("remote") or counts.get(target) or {}


@dataclass
class SyncResult:
    """The runs of one request (one per target, in the registry's order) as one answer."""

    runs: list[RunReport]

    @property
    def exit_code(self) -> int:
        """The worst of the runs': stopped (1) over skipped (3) over ok (0)."""
        return max((r.exit_code for r in self.runs), key=_SEVERITY.__getitem__,
                   default=EXIT_OK)

    @property
    def status(self) -> str:
        """ok, skipped (finished, some items skipped) or stopped."""
        return {EXIT_OK: "ok", EXIT_SKIPPED: "skipped"}.get(self.exit_code, "stopped")

    def stops(self) -> list[str]:
        """One line per run that stopped: target and reason."""
        return [f"{r.target}: {r.message or r.status}" for r in self.runs if r.status != "ok"]

    def to_dict(self) -> dict:
        """The HTTP answer: ``{"status", "exit_code", "error", "runs": [report, ...]}``."""
        return {"status": self.status, "exit_code": self.exit_code,
                "error": "; ".join(self.stops()) or None,
                "runs": [r.to_dict() for r in self.runs]}
