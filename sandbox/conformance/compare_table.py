"""Compares a replicated PostgreSQL table with the DAP sandbox's expected content.

usage: compare_table.py CONNECTION_STRING SANDBOX_BASE_URL NAMESPACE TABLE
Exits 1 and prints the first differences when the contents differ.
"""
import asyncio
import datetime as dt
import decimal
import json
import math
import sys
import urllib.request

import asyncpg


def parse_time(text):
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def same(db, expected):
    if db is None or expected is None:
        return db is None and expected is None
    if isinstance(db, dt.datetime):
        db = db if db.tzinfo else db.replace(tzinfo=dt.timezone.utc)
        return db == parse_time(expected)
    if isinstance(db, dt.date):
        return db.isoformat() == expected
    if isinstance(db, str) and isinstance(expected, (dict, list)):
        return json.loads(db) == expected
    if isinstance(db, (float, decimal.Decimal)) and isinstance(expected, (int, float)):
        return math.isclose(float(db), float(expected), rel_tol=1e-9, abs_tol=1e-12)
    return db == expected


async def main(dsn, base, namespace, table):
    with urllib.request.urlopen(f"{base}/__sandbox/dap/expected/{namespace}/{table}") as resp:
        expected = json.load(resp)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT * FROM "{namespace}"."{table}"')
    finally:
        await conn.close()
    actual = {row["id"]: dict(row) for row in rows}
    wanted = {row["id"]: row for row in expected}
    problems = []
    for key in sorted(set(actual) | set(wanted)):
        if key not in actual:
            problems.append(f"id {key}: missing from the database")
            continue
        if key not in wanted:
            problems.append(f"id {key}: in the database but deleted or never in the sandbox")
            continue
        for column, value in wanted[key].items():
            if column not in actual[key]:
                problems.append(f"id {key}: column {column} missing from the database")
            elif not same(actual[key][column], value):
                problems.append(
                    f"id {key}.{column}: database {actual[key][column]!r} != expected {value!r}")
    if problems:
        print(f"{namespace}.{table}: {len(problems)} difference(s)", file=sys.stderr)
        for line in problems[:20]:
            print("  " + line, file=sys.stderr)
        sys.exit(1)
    print(f"{namespace}.{table}: {len(actual)} rows identical to the sandbox")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
