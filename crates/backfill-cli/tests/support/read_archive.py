"""An independent reader of an archive run: pyarrow reads every part in a
directory and prints, as JSON, each column's Arrow type and `pg_type`, and
each row's values by id. Dates, times and timestamps are printed as their
stored integers, since Python's datetime cannot hold Postgres' infinities
and far years; decimals as text, bytes as hex, floats by repr."""

import json
import math
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def plain(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def main(directory):
    dataset = pq.ParquetDataset(directory)
    table = dataset.read()
    schema = table.schema
    out = {"types": {}, "pg_types": {}, "rows": {}}
    columns = {}
    for field in schema:
        out["types"][field.name] = str(field.type)
        meta = field.metadata or {}
        out["pg_types"][field.name] = meta.get(b"pg_type", b"").decode()
        col = table.column(field.name)
        if pa.types.is_date32(field.type):
            col = pa.chunked_array([c.view(pa.int32()) for c in col.chunks], type=pa.int32())
        elif pa.types.is_timestamp(field.type) or pa.types.is_time64(field.type):
            col = pa.chunked_array([c.view(pa.int64()) for c in col.chunks], type=pa.int64())
        columns[field.name] = col.to_pylist()
    for i, row_id in enumerate(columns["id"]):
        out["rows"][str(row_id)] = {name: plain(vals[i]) for name, vals in columns.items()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
