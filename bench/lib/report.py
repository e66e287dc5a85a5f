#!/usr/bin/env python3
"""Result files for bench/run (stdlib only).

  report.py machine
      the machine description as JSON

  report.py wrk --scenario NAME --wrk-out FILE --rss FILE --connections N --threads N
                --duration-s S --run-id ID --out-dir DIR [--extra JSON]
      turns wrk output (the BENCH_JSON line printed by lib/report.lua) into DIR/NAME.json

  report.py single --scenario NAME --rss FILE --run-id ID --out-dir DIR --extra JSON
      a scenario that is not a wrk run (bulk_import, startup): writes DIR/NAME.json from --extra

  report.py summary --out-dir DIR --run-id ID [--readme FILE]
      DIR/summary.md from every DIR/*.json; the table also replaces the text between
      `<!-- bench:start -->` and `<!-- bench:end -->` in FILE when both markers are there

  report.py get FILE KEY[.KEY…]
      prints one value of a JSON file (or of stdin with FILE '-')

Every scenario file carries a `targets` map {name: {target, actual, pass}} for the goals in
bench/README.md; `summary` shows the failures.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys

ORDER = ["startup", "health", "login", "leads_list", "leads_search", "lead_create", "bulk_import", "bulk_import_async",
         "jobs_throughput", "jobs_crash", "ws_fanout", "kb_search", "kb_embed", "available_slots", "costs_summary",
         "chat_test", "chat_stream", "chat_llm", "voice_webhook", "webhook_ingest", "webhook_to_reply", "campaign_fanout"]
MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"

# name -> (field, comparison, limit, unit). Applied to the scenario they are listed under;
# "*" applies to every wrk scenario.
TARGETS = {
    "*": [("peak_rss_mb", "<=", 80, "MB")],
    "startup": [("cold_start_ms", "<=", 1000, "ms"), ("idle_rss_mb", "<=", 30, "MB")],
    "leads_list": [
        ("requests_per_sec", ">=", 3000, "req/s"),
        ("latency_p99_ms", "<=", 30, "ms"),
        ("ratio_to_raw_sql", ">=", 0.5, ""),
    ],
    "login": [("latency_p99_ms", "<=", 250, "ms")],
    "bulk_import": [("wall_time_s", "<=", 5, "s"), ("counts_match", "==", True, "")],
    "jobs_throughput": [
        ("enqueue_jobs_per_sec", ">=", 10000, "jobs/s"),
        ("exec_jobs_per_sec_1proc", ">=", 5000, "jobs/s"),
        ("errors", "==", 0, ""),
    ],
    "ws_fanout": [("missing", "==", 0, ""), ("latency_p99_ms", "<=", 50, "ms")],
    "bulk_import_async": [("worker_peak_rss_mb", "<=", 100, "MB"), ("counts_match", "==", True, "")],
    "jobs_crash": [("lost", "==", 0, ""), ("duplicated_effects", "==", 0, ""), ("recovery_s", "<=", 60, "s")],
    "kb_search": [("latency_p99_ms", "<=", 15, "ms"), ("recall_at_5", ">=", 0.95, "")],
    "kb_embed": [("entries_per_sec", ">=", 2000, "entries/s"), ("errors", "==", 0, "")],
    "available_slots": [("latency_p99_ms", "<=", 20, "ms")],
    "costs_summary": [("latency_p99_ms", "<=", 100, "ms"), ("errors", "==", 0, "")],
    "chat_test": [("requests_per_sec", ">=", 800, "req/s"), ("latency_p99_ms", "<=", 40, "ms")],
    "chat_stream": [("ttft_p99_ms", "<=", 20, "ms"), ("errors", "==", 0, "")],
    # overhead = latency − the fake model's fixed answer time (bench/lib/fake_openai.py).
    "chat_llm": [("requests_per_sec", ">=", 250, "req/s"), ("overhead_p99_ms", "<=", 25, "ms"), ("errors", "==", 0, "")],
    "voice_webhook": [("requests_per_sec", ">=", 3000, "events/s"), ("latency_p99_ms", "<=", 20, "ms"),
                      ("errors", "==", 0, "")],
    "webhook_ingest": [("requests_per_sec", ">=", 4000, "req/s"), ("latency_p99_ms", "<=", 20, "ms"),
                       ("errors", "==", 0, "")],
    # latency_* of webhook_to_reply are measured from the reply job's due time (window excluded).
    "webhook_to_reply": [("after_due_p50_ms", "<=", 150, "ms"), ("after_due_p99_ms", "<=", 500, "ms"),
                         ("achieved_rate_per_sec", ">=", 195, "msgs/s"), ("missing", "==", 0, ""),
                         ("duplicate_replies", "==", 0, ""), ("errors", "==", 0, "")],
    "campaign_fanout": [("all_scheduled_s", "<=", 10, "s"), ("all_scheduled", "==", True, "")],
}

# Scenarios that are not wrk runs but load the api, so the api RSS target ("*") applies too.
API_LOAD_SINGLES = ("bulk_import", "ws_fanout", "chat_stream", "webhook_to_reply", "campaign_fanout")


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpus": cpus, "cpu_model": model or platform.processor() or "unknown", "mem_gb": mem_gb,
            "kernel": platform.release()}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_rss(path: str):
    try:
        with open(path, encoding="ascii") as f:
            return json.load(f).get("peak_rss_mb")
    except (OSError, ValueError):
        return None


def fold_hwm(res: dict) -> None:
    """With a fresh api process per scenario, VmHWM is the exact peak (warm-up included), which the
    100 ms sampling can miss; peak_rss_mb is then the larger of the two."""
    if "peak_rss_mb" not in res and "vm_hwm_mb" not in res:
        return
    sampled = res.get("peak_rss_mb")
    res["peak_rss_sampled_mb"] = sampled
    hwm = res.get("vm_hwm_mb")
    if res.get("fresh_api_process") and hwm is not None:
        res["peak_rss_mb"] = max(sampled or 0, hwm)


def check_targets(scenario: str, res: dict, is_wrk: bool) -> dict:
    rules = list(TARGETS.get(scenario, []))
    if is_wrk or scenario in API_LOAD_SINGLES:
        rules = TARGETS["*"] + rules
    out = {}
    for field, op, limit, unit in rules:
        actual = res.get(field)
        if actual is None:
            ok = None
        elif op == "<=":
            ok = actual <= limit
        elif op == ">=":
            ok = actual >= limit
        else:
            ok = actual == limit
        out[field] = {"target": f"{op} {limit}{(' ' + unit) if unit else ''}", "actual": actual, "pass": ok}
    return out


def write(out_dir: str, scenario: str, res: dict) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{scenario}.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def parse_wrk(path: str) -> dict:
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = re.search(r"^BENCH_JSON (\{.*\})\s*$", text, re.M)
    if not m:
        raise SystemExit(f"report.py: no BENCH_JSON line in {path}; wrk output was:\n{text}")
    return json.loads(m.group(1))


def cmd_wrk(a) -> int:
    w = parse_wrk(a.wrk_out)
    dur = w["duration_us"] / 1e6
    socket_errors = w["errors_connect"] + w["errors_read"] + w["errors_write"] + w["errors_timeout"]
    res = {
        "scenario": a.scenario,
        "requests_per_sec": round(w["requests"] / dur, 1) if dur > 0 else None,
        "latency_p50_ms": round(w["latency_p50_us"] / 1000, 2),
        "latency_p99_ms": round(w["latency_p99_us"] / 1000, 2),
        "errors": w["errors_status"] + socket_errors,
        "peak_rss_mb": read_rss(a.rss),
        "duration_s": round(dur, 2),
        "connections": a.connections,
        "machine": machine(),
        "timestamp": now_iso(),
        "run_id": a.run_id,
        "threads": a.threads,
        "requests": w["requests"],
        "errors_detail": {
            "http_status_ge_400": w["errors_status"],
            "connect": w["errors_connect"],
            "read": w["errors_read"],
            "write": w["errors_write"],
            "timeout": w["errors_timeout"],
        },
        "latency_ms": {
            "mean": round(w["latency_mean_us"] / 1000, 2),
            "p50": round(w["latency_p50_us"] / 1000, 2),
            "p75": round(w["latency_p75_us"] / 1000, 2),
            "p90": round(w["latency_p90_us"] / 1000, 2),
            "p99": round(w["latency_p99_us"] / 1000, 2),
            "p99.9": round(w["latency_p999_us"] / 1000, 2),
            "max": round(w["latency_max_us"] / 1000, 2),
        },
        "transfer_mb_per_sec": round(w["bytes"] / dur / 1e6, 2) if dur > 0 else None,
    }
    if a.extra:
        res.update(json.loads(a.extra))
    fold_hwm(res)
    if res.get("api_cpu_s") is not None and w["requests"]:
        res["api_cpu_ms_per_request"] = round(res["api_cpu_s"] * 1000 / w["requests"], 3)
    res["targets"] = check_targets(a.scenario, res, True)
    print(write(a.out_dir, a.scenario, res))
    return 0


def cmd_single(a) -> int:
    res = {"scenario": a.scenario}
    res.update(json.loads(a.extra))
    if a.rss:
        res["peak_rss_mb"] = read_rss(a.rss)
    fold_hwm(res)
    res.setdefault("machine", machine())
    res.setdefault("timestamp", now_iso())
    res["run_id"] = a.run_id
    res["targets"] = check_targets(a.scenario, res, False)
    print(write(a.out_dir, a.scenario, res))
    return 0


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if isinstance(v, float):
            return f"{v:,.{digits}f}"
        return f"{v:,}"
    return str(v)


def notes_for(r: dict) -> str:
    s = r.get("scenario")
    notes = []
    if s == "leads_list" and r.get("raw_sql_tps") is not None:
        n = f"raw SQL {fmt(r['raw_sql_tps'])} tps, ratio {fmt(r.get('ratio_to_raw_sql'), 2)}"
        if r.get("raw_sql_count_star_tps") is not None:
            n += f" (page + count(*) form: {fmt(r['raw_sql_count_star_tps'])} tps)"
        notes.append(n)
    if s == "costs_summary":
        notes.append(f"{fmt(r.get('ledger_rows'))} ledger rows in {fmt(r.get('rollup_rows'))} hourly roll-ups; "
                     f"summary counts {fmt(r.get('summary_total_calls'))}")
    if s == "chat_llm":
        notes.append(f"fake model answers in {fmt(r.get('model_delay_ms'))} ms; overhead p50/p99 "
                     f"{fmt(r.get('overhead_p50_ms'), 1)}/{fmt(r.get('overhead_p99_ms'), 1)} ms; "
                     f"{fmt(r.get('model_requests'))} model calls ({fmt(r.get('model_json_requests'))} extractions), "
                     f"{fmt(r.get('llm_ledger_rows'))} ledger rows")
    if s == "leads_search":
        notes.append(f"search `{r.get('search')}` matches {fmt(r.get('search_total'))} of {fmt(r.get('leads_in_broker'))}")
    if s == "lead_create" and r.get("rows_created") is not None:
        notes.append(f"{fmt(r['rows_created'])} rows created")
    if s == "bulk_import":
        act = r.get("actual") or {}
        notes.append(
            f"{fmt(r.get('rows'))} rows in {fmt(r.get('wall_time_s'), 2)} s; imported/dup/invalid "
            f"{fmt(act.get('imported'))}/{fmt(act.get('duplicates'))}/{fmt(act.get('invalid'))}"
            f" ({'as expected' if r.get('counts_match') else 'MISMATCH'})"
        )
    if s == "bulk_import_async":
        act = r.get("actual") or {}
        notes.append(
            f"{fmt(r.get('rows'))} rows imported by the worker in {fmt(r.get('import_s'), 1)} s after the 202 "
            f"(upload {fmt(r.get('upload_s'), 1)} s); imported/dup/invalid {fmt(act.get('imported'))}/"
            f"{fmt(act.get('duplicates'))}/{fmt(act.get('invalid'))} ({'as expected' if r.get('counts_match') else 'MISMATCH'}); "
            f"peak RSS is the worker's (start {fmt(r.get('worker_rss_at_start_mb'))} MB)"
        )
    if s == "jobs_crash":
        notes.append(
            f"{fmt(r.get('jobs'))} jobs with effects, 2 worker processes, one SIGKILLed at {fmt(r.get('done_at_kill'))} done: "
            f"lost {fmt(r.get('lost'))}, duplicated effects {fmt(r.get('duplicated_effects'))}, "
            f"redelivered {fmt(r.get('redelivered'))}, all done {fmt(r.get('recovery_s'), 1)} s after the kill"
        )
    if s == "jobs_throughput":
        notes.append(
            f"{fmt(r.get('jobs'))} no-op jobs, concurrency {fmt(r.get('worker_concurrency'))}: enqueue "
            f"{fmt(r.get('enqueue_jobs_per_sec'), 0)}/s ({fmt(r.get('enqueue_tasks'))} tasks); execution 1 process "
            f"{fmt(r.get('exec_jobs_per_sec_1proc'), 0)}/s, 2 processes {fmt(r.get('exec_jobs_per_sec_2proc'), 0)}/s, "
            f"2 `run_with` in 1 process {fmt(r.get('exec_jobs_per_sec_2inproc'), 0)}/s"
        )
        stuck = [k for k, v in (r.get("phases") or {}).items() if isinstance(v, dict) and v.get("stalled")]
        if stuck:
            notes.append(f"STUCK in {', '.join(stuck)} (queue made no progress; see `problems`)")
    if s == "ws_fanout":
        notes.append(
            f"{fmt(r.get('sockets_connected'))}/{fmt(r.get('sockets'))} sockets × {fmt(r.get('events'))} events "
            f"({fmt(r.get('rate_per_sec'))}/s): missing {fmt(r.get('missing'))}, duplicates {fmt(r.get('duplicates'))}, "
            f"max {fmt(r.get('latency_max_ms'), 2)} ms"
        )
    if s == "kb_search":
        notes.append(
            f"{fmt(r.get('entries'))} entries in one broker; recall@5 {fmt(r.get('recall_at_5'), 3)} over "
            f"{fmt(r.get('recall_queries'))} questions (plan uses HNSW: {fmt(r.get('plan_uses_hnsw'))})"
        )
    if s == "kb_embed":
        notes.append(
            f"{fmt(r.get('ready'))}/{fmt(r.get('entries'))} entries ({fmt(r.get('chunks'))} chunks) embedded by one worker "
            f"in {fmt(r.get('embed_s'), 2)} s, concurrency {fmt(r.get('worker_concurrency'))}"
        )
        if r.get("floor_insert_s") is not None:
            notes.append(
                f"indexing floor: the same vectors inserted by SQL alone into the same HNSW indexes took "
                f"{fmt(r.get('floor_insert_s'), 2)} s ({fmt(r.get('floor_entries_per_sec'))} entries/s)"
            )
    if s == "available_slots":
        notes.append(
            f"{fmt(r.get('window_days'))}-day window, {fmt(r.get('agents'))} agents, {fmt(r.get('appointments_booked'))} "
            f"booked; {fmt(r.get('slots_returned'))} free slots"
        )
    if s == "chat_test" and r.get("messages_stored") is not None:
        notes.append(f"{fmt(r.get('leads'))} leads; {fmt(r['messages_stored'])} messages, {fmt(r.get('ledger_rows'))} ledger rows stored")
    if s == "chat_stream":
        total = r.get("stream_total_ms") or {}
        notes.append(f"latency = time to first token; whole stream (with pacing) p50 {fmt(total.get('p50'), 0)} ms")
    if s == "webhook_ingest" and r.get("messages_stored_pending") is not None:
        who = "senders already chatting" if r.get("senders_seeded") else "senders, all new at first"
        notes.append(f"{fmt(r['messages_stored_pending'])} messages stored and their reply jobs queued from "
                     f"{fmt(r.get('senders'))} {who} ({fmt(r.get('leads_created'))} leads created); no worker")
    if s == "webhook_to_reply":
        raw = r.get("raw_ms") or {}
        mw = r.get("minus_window_ms") or {}
        notes.append(
            f"{fmt(r.get('replies'))}/{fmt(r.get('messages'))} replied once at {fmt(r.get('achieved_rate_per_sec'))} msgs/s, "
            f"one worker; p50/p99 from the job's due time; raw (2 s window + whole-second rounding included) "
            f"{fmt(raw.get('p50'), 0)}/{fmt(raw.get('p99'), 0)} ms, raw − 2 s {fmt(mw.get('p50'), 0)}/{fmt(mw.get('p99'), 0)} ms")
    if s == "campaign_fanout":
        notes.append(f"{fmt(r.get('leads'))} leads: apply answered in {fmt(r.get('apply_s'), 2)} s, every first step "
                     f"logged and queued after {fmt(r.get('all_scheduled_s'), 2)} s")
    failed = [f"{k} {fmt(v['actual'], 2)} (target {v['target']})" for k, v in (r.get("targets") or {}).items()
              if v.get("pass") is False]
    if failed:
        notes.append("missed: " + "; ".join(failed))
    return "; ".join(notes)


def cmd_summary(a) -> int:
    results = {}
    for name in os.listdir(a.out_dir):
        if name.endswith(".json"):
            try:
                with open(os.path.join(a.out_dir, name), encoding="utf-8") as f:
                    r = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(r, dict) and r.get("scenario"):
                results[r["scenario"]] = r
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    m = machine()
    for r in results.values():
        if r.get("run_id") == a.run_id and r.get("machine"):
            m = r["machine"]
            break
    lines = [
        "| Scenario | Conns | Req/s | p50 ms | p99 ms | Errors | Peak RSS MB | Notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    stale = False
    for n in names:
        if n == "startup":
            continue
        r = results[n]
        mark = ""
        if r.get("run_id") != a.run_id:
            mark, stale = " †", True
        if n == "bulk_import":
            rps = f"{fmt(r.get('rows_per_sec'), 0)} rows/s"
        elif n == "bulk_import_async":
            rps = f"{fmt(r.get('rows_per_sec'), 0)} rows/s"
        elif n == "jobs_throughput":
            rps = f"{fmt(r.get('exec_jobs_per_sec_1proc'), 0)} jobs/s"
        elif n == "jobs_crash":
            rps = f"{fmt(r.get('exec_jobs_per_sec'), 0)} jobs/s"
        elif n == "ws_fanout":
            rps = f"{fmt(r.get('deliveries_per_sec'), 0)} msgs/s"
        elif n == "kb_embed":
            rps = f"{fmt(r.get('entries_per_sec'), 0)} entries/s"
        elif n == "webhook_to_reply":
            rps = f"{fmt(r.get('achieved_rate_per_sec'), 0)} msgs/s"
        elif n == "campaign_fanout":
            rps = f"{fmt(r.get('leads_per_sec'), 0)} leads/s"
        else:
            rps = fmt(r.get("requests_per_sec"), 0)
        lines.append(
            f"| {n}{mark} | {fmt(r.get('connections'))} | {rps} | {fmt(r.get('latency_p50_ms'), 2)} | "
            f"{fmt(r.get('latency_p99_ms'), 2)} | {fmt(r.get('errors'))} | {fmt(r.get('peak_rss_mb'))} | {notes_for(r)} |"
        )
    table = "\n".join(lines)
    st = results.get("startup")
    extra = []
    if st:
        s = f"Cold start {fmt(st.get('cold_start_ms'), 0)} ms, idle RSS {fmt(st.get('idle_rss_mb'))} MB"
        missed = [f"{k} (target {v['target']})" for k, v in (st.get("targets") or {}).items()
                  if v.get("pass") is False]
        if missed:
            s += "; missed: " + ", ".join(missed)
        extra.append(s + ("" if st.get("run_id") == a.run_id else " †"))
    mline = (f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {fmt(m.get('mem_gb'))} GB RAM, "
             f"Linux {m.get('kernel')}; run {a.run_id}")
    if stale:
        extra.append("† from an earlier run (this run did not include that scenario)")
    block = "\n\n".join([table] + (["  \n".join(extra)] if extra else []) + [mline])

    summary_path = os.path.join(a.out_dir, "summary.md")
    with open(summary_path, "w", encoding="utf-8") as f:
        f.write("# Corredor API benchmark\n\n")
        f.write("Generated by `bench/run` (see bench/README.md for what each scenario measures and the targets).\n\n")
        f.write(block + "\n")
    print(summary_path)

    if a.readme and os.path.isfile(a.readme):
        with open(a.readme, encoding="utf-8") as f:
            text = f.read()
        i, j = text.find(MARK_START), text.find(MARK_END)
        if i != -1 and j != -1 and i < j:
            new = text[: i + len(MARK_START)] + "\n" + block + "\n" + text[j:]
            if new != text:
                with open(a.readme, "w", encoding="utf-8") as f:
                    f.write(new)
            print(f"{a.readme}: table updated between the bench markers")
        else:
            print(f"{a.readme}: no {MARK_START} … {MARK_END} markers; left alone")
    return 0


def cmd_get(a) -> int:
    data = json.load(sys.stdin) if a.file == "-" else json.load(open(a.file, encoding="utf-8"))
    for k in a.key.split("."):
        if isinstance(data, list):
            data = data[int(k)]
        elif isinstance(data, dict) and k in data:
            data = data[k]
        else:
            print(f"report.py get: no key {a.key!r}", file=sys.stderr)
            return 1
    print(json.dumps(data) if isinstance(data, (dict, list, bool)) or data is None else data)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="bench/run result files")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("machine")
    w = sub.add_parser("wrk")
    w.add_argument("--scenario", required=True)
    w.add_argument("--wrk-out", required=True)
    w.add_argument("--rss", required=True)
    w.add_argument("--connections", type=int, required=True)
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--duration-s", type=float)
    w.add_argument("--run-id", required=True)
    w.add_argument("--out-dir", required=True)
    w.add_argument("--extra")
    s = sub.add_parser("single")
    s.add_argument("--scenario", required=True)
    s.add_argument("--rss")
    s.add_argument("--run-id", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--extra", required=True)
    m = sub.add_parser("summary")
    m.add_argument("--out-dir", required=True)
    m.add_argument("--run-id", required=True)
    m.add_argument("--readme")
    g = sub.add_parser("get")
    g.add_argument("file")
    g.add_argument("key")
    a = ap.parse_args()
    if a.cmd == "machine":
        print(json.dumps(machine()))
        return 0
    return {"wrk": cmd_wrk, "single": cmd_single, "summary": cmd_summary, "get": cmd_get}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
