"""What a sync run did, as the CLI prints it and the HTTP endpoint answers it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    run_id: int | None = None
    # dry run only: what would be done, one line each
    planned: list[str] = field(default_factory=list)

    def side(self, name: str) -> SideCounts:
        return self.gestan if name == "gestan" else self.remote

    def count(self, side: str, change: str) -> None:
        """One more ``change`` (create / update / delete) on ``side``."""
        counts = self.side(side)
        name = change + "d"
        setattr(counts, name, getattr(counts, name) + 1)

    def counts(self) -> dict:
        return {"gestan": asdict(self.gestan), self.target: asdict(self.remote),
                "conflicts": len(self.conflicts), "skipped": len(self.skipped),
                "requests": self.requests}

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "user": self.user, "target": self.target,
            "direction": self.direction, "dry_run": self.dry_run, "status": self.status,
            "message": self.message, "gestan": asdict(self.gestan),
            self.target: asdict(self.remote),
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
