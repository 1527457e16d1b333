-- wrk script for `make bench`: POST /v1/auth:login with one registered account.
-- The email and password come from the environment (set by scripts/bench.sh).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"%s","password":"%s"}', os.getenv("BENCH_EMAIL"), os.getenv("BENCH_PASSWORD"))
