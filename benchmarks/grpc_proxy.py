"""Benchmark 7: Optuna's gRPC storage proxy in front of PostgreSQL vs PostgreSQL directly.

N processes each run K trivial trials (ask, one suggest_float, tell) on one study, either with
their own RDBStorage (each process its own connection pool) or through one
`optuna.storages.run_grpc_proxy_server` process holding the only database connections. Prints
one JSON line: trials per second and the peak number of client connections PostgreSQL saw.
Needs grpcio (`pip install grpcio`) and a PostgreSQL server: --url, or the PostgreSQL server
binaries on PATH for a throwaway cluster (tests/postgres.py).

    python benchmarks/grpc_proxy.py --procs 1 4 8 --trials 100
"""

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _driver(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _client(how: str, url: str, port: int, study: str, trials: int, ready, go) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")
    if how == "direct":
        storage = optuna.storages.RDBStorage(_driver(url))
    else:
        storage = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
    s = optuna.load_study(study_name=study, storage=storage, sampler=optuna.samplers.RandomSampler())
    ready.release()
    go.wait()
    for _ in range(trials):
        t = s.ask()
        s.tell(t, t.suggest_float("x", 0, 1))


def _proxy(url: str, port: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(_driver(url)), host="127.0.0.1", port=port)


def _connections(port: int) -> int:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={port} user=tunekit dbname=postgres") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()
    return int(row[0]) - 1


def run(how: str, url: str, db_port: int, procs: int, trials: int) -> dict:
    import optuna

    ctx = multiprocessing.get_context("spawn")
    name = f"{how}-{procs}-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=_driver(url))
    proxy = None
    grpc_port = 0
    if how == "grpc":
        from tests.postgres import free_port

        grpc_port = free_port()
        proxy = ctx.Process(target=_proxy, args=(url, grpc_port))
        proxy.start()
        time.sleep(3)
    ready, go = ctx.Semaphore(0), ctx.Event()
    workers = [ctx.Process(target=_client, args=(how, url, grpc_port, name, trials, ready, go)) for _ in range(procs)]
    for p in workers:
        p.start()
    for _ in workers:
        ready.acquire()
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _connections(db_port))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    go.set()
    for p in workers:
        p.join()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    if proxy is not None:
        proxy.terminate()
        proxy.join()
    return {"how": how, "procs": procs, "trials_per_s": round(procs * trials / elapsed, 1), "peak_connections": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="a PostgreSQL URL (user tunekit, 127.0.0.1); default: a throwaway cluster")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    try:
        import grpc  # noqa: F401
    except ImportError:
        print(json.dumps({"benchmark": "grpc_proxy", "skipped": "grpcio is not installed (pip install grpcio)"}))
        return
    import shutil

    if not args.url and not all(shutil.which(b) for b in ("initdb", "pg_ctl", "postgres")):
        print(json.dumps({"benchmark": "grpc_proxy", "skipped": "no --url and no PostgreSQL server binaries on PATH"}))
        return
    cluster = None
    if args.url:
        url = args.url
    else:
        from tests.postgres import Cluster

        cluster = Cluster()
        url = cluster.url
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        rows = []
        for n in args.procs:
            for how in ("direct", "grpc"):
                rows.append(run(how, url, port, n, args.trials))
                print(
                    f"{how:>6} x {n}: {rows[-1]['trials_per_s']} trials/s, {rows[-1]['peak_connections']} connections"
                )
    finally:
        if cluster is not None:
            cluster.close()
    print(json.dumps({"benchmark": "grpc_proxy", "cores": os.cpu_count(), "trials": args.trials, "rows": rows}))


if __name__ == "__main__":
    main()
