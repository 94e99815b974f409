"""The sync benchmark at a tiny size, so that it cannot rot (figures live in bench/, not in
assertions on timings): every row runs and its answer is checked, on Google, EWS and Graph."""

from __future__ import annotations

import json

import pytest

from bench import sync_bench


def test_sync_bench_runs_and_checks_its_answers(tmp_path):
    out = tmp_path / "sync.json"
    assert sync_bench.main(["--n", "60", "--series", "20", "--open-n", "40",
                            "--open-series", "5", "--repeats", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    google = figures["google"]
    assert google["initial_push"]["requests"] <= 60 // 50 + 2
    assert google["initial_push"]["google"]["created"] == google["in_window"]
    assert 0 < google["initial_push"]["cpu_s"] <= google["initial_push"]["wall_s"]
    assert google["close_nothing_changed"]["requests"] == 0
    assert google["open_nothing_changed"]["requests"] == 1
    assert google["open_one_change"]["gestan"]["updated"] == 1
    assert google["close_one_change"]["google"]["deleted"] == 1
    # issue 8 point 12: a close writing series (one updated, one created, each with a moved
    # occurrence), then an open that reads none of them again
    written = google["series_written"]
    assert written["updated"] >= 1 and written["created"] >= 1
    assert google["close_series_written"]["google"] == {
        "created": written["created"], "updated": written["updated"], "deleted": 0}
    assert google["open_after_series_close"]["requests"] == 1
    assert google["open_after_series_close"]["gestan"] == {"created": 0, "updated": 0,
                                                           "deleted": 0}
    # issue 8 point 11: the first open of Google events beside icalendar alone
    first = figures["first_open"]
    assert (first["events"], first["series"]) == (40, 5)
    assert first["moved"] == 6 and first["cancelled"] == 3
    assert first["cpu_s"] > 0 and first["icalendar_cpu_s"] > 0
    assert first["ratio_cpu"] == first["cpu_s"] / first["icalendar_cpu_s"]
    assert set(figures["targets_met"]) == {
        "first_open_3x", "initial_push_cpu", "open_after_series_close", "initial_push",
        "close_nothing_changed", "open_nothing_changed", "series_3x",
        *(f"{kind}_{row}" for kind in ("ews", "graph")
          for row in ("initial_push", "close_nothing_changed", "open_nothing_changed"))}
    assert figures["series"]["occurrences"] > 20
    # issue 9: the same rows on Exchange (EWS) and Microsoft 365 (Graph), counted by the fakes
    assert figures["targets"] == ["google", "ews", "graph"]
    for kind in ("ews", "graph"):
        rows = figures[kind]
        assert rows["in_window"] == google["in_window"]
        push = rows["initial_push"]
        assert push["remote"] == {"created": google["in_window"], "updated": 0, "deleted": 0}
        assert 0 < push["cpu_s"] <= push["wall_s"] and push["requests"] >= 2
        assert rows["close_nothing_changed"]["requests"] == 0
        assert rows["open_nothing_changed"]["requests"] == 1
        assert rows["open_one_change"]["gestan"] == {"created": 0, "updated": 1, "deleted": 0}
        assert rows["close_one_change"]["remote"] == {"created": 0, "updated": 0, "deleted": 1}
    assert "CreateItem" in figures["ews"]["initial_push"]["seen"]
    assert figures["ews"]["open_nothing_changed"]["seen"] == "SyncFolderItems"
    assert "$batch" in figures["graph"]["initial_push"]["seen"]
    assert "token" not in figures["graph"]["open_nothing_changed"]["seen"]


def test_targets_option_runs_only_those(tmp_path):
    out = tmp_path / "outlook.json"
    assert sync_bench.main(["--n", "30", "--targets", "graph,ews", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["targets"] == ["graph", "ews"]
    assert "google" not in figures and "first_open" not in figures
    assert figures["graph"]["initial_push"]["remote"]["created"] == figures["ews"]["in_window"]
    with pytest.raises(SystemExit):
        sync_bench.main(["--targets", "google,icloud"])


def test_a_wrong_answer_stops_the_bench(monkeypatch):
    """The first open's answer check is live: a store missing a moved occurrence fails."""
    real = sync_bench.add_exceptions

    def claims_one_more(*args):
        moved, cancelled = real(*args)
        return moved + 1, cancelled

    monkeypatch.setattr(sync_bench, "add_exceptions", claims_one_more)
    with pytest.raises(SystemExit, match="answer check failed: first open"):
        sync_bench.main(["--n", "20", "--series", "5", "--open-n", "20", "--open-series",
                         "2", "--repeats", "1"])


def test_an_ews_write_that_may_invite_stops_the_bench(monkeypatch):
    """SendToNone is checked on every EWS write the fake saw."""
    monkeypatch.setattr("bridge.targets.ews.SEND_TO_NONE", "SendToAllAndSaveCopy")
    with pytest.raises(SystemExit, match="answer check failed: EWS: initial_push: a "
                                         "CreateItem with SendMeetingInvitations="):
        sync_bench.main(["--n", "20", "--targets", "ews"])


def test_a_graph_invitation_stops_the_bench(monkeypatch):
    """Invitations mailed by the Graph fake are checked after every run (every tenth
    appointment of the bench has an invited client)."""
    from bridge.targets import graph

    real = graph.to_graph

    def with_attendees(*args, **kwargs):
        body, series = real(*args, **kwargs)
        body["attendees"] = [{"emailAddress": {"address": "client@example.com"}}]
        return body, series

    monkeypatch.setattr(graph, "to_graph", with_attendees)
    with pytest.raises(SystemExit, match=r"answer check failed: Graph: initial_push: \d+ "
                                         "invitations mailed"):
        sync_bench.main(["--n", "20", "--targets", "graph"])
