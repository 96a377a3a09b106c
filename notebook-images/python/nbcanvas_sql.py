"""The %%sql cell magic of nbcanvas's sandboxes.

The sandbox has no network and never reaches a database: the service ran
each %%sql cell's query before the notebook started (src/sql_cells.c) and
placed its rows in the working folder as .nbcanvas/sql/<key>.json, key
being the SHA-256 of the datasource's name, a newline, and the query with
the blanks around it removed. This magic computes the same key, reads the
rows back as a pandas DataFrame with their types (integers, with NULLs as
pandas' nullable Int64; floats, and numeric as float64 as pandas.read_sql
makes it by default, so it charts; text;
booleans; dates as datetime.date; timestamps as datetime64, in UTC for
those with a time zone; JSON as Python objects), binds it to the name the
header gives (default _sql) and returns it, so the cell shows the table.

    %%sql <datasource> [-> <name>]
    SELECT ...

Registered by the service (src/kernel_job.c) when a job carries such files
(install()).
"""
import hashlib
import json
import os

BLANKS = " \t\r\n\f\v"
# where the service puts the rows: absolute, so a cell's os.chdir does not
# lose them (install() is told the folder)
FOLDER = ["/home/sandbox/.nbcanvas/sql"]


class SQLCellError(Exception):
    """A %%sql cell whose rows the service did not provide."""


def parse_header(line):
    words = line.split()
    if not words or len(words) not in (1, 3) or (len(words) == 3 and words[1] != "->"):
        raise SQLCellError("a %%sql cell starts with %%sql <datasource> [-> <name>]")
    name = words[2] if len(words) == 3 else "_sql"
    if not name.isidentifier():
        raise SQLCellError("the name after -> must be a Python identifier")
    return words[0], name


def key(datasource, query):
    return hashlib.sha256((datasource + "\n" + query).encode()).hexdigest()


def column(values, field):
    import pandas as pd

    kind, db = field.get("type"), field.get("db_type", "").lower()
    present = [v for v in values if v is not None]
    if kind == "integer":
        return pd.array(values, dtype="Int64") if len(present) < len(values) \
            else pd.array(values, dtype="int64")
    if kind == "number":  # numeric too, as pandas.read_sql's coerce_float has it
        return pd.array([float("nan") if v is None else float(v) for v in values],
                        dtype="float64")
    if kind == "boolean":
        return pd.array(values, dtype="boolean") if len(present) < len(values) \
            else pd.array([bool(v) for v in values], dtype="bool")
    if kind == "datetime":
        return pd.to_datetime(pd.Series(values, dtype=object), utc="time zone" in db
                              or any(isinstance(v, str) and v.endswith("Z") for v in present))
    if kind == "date" and db == "date":
        import datetime
        return pd.array([None if v is None else datetime.date.fromisoformat(v[:10])
                         for v in values], dtype=object)
    return pd.array(values, dtype=object)


def frame(rows_file):
    import pandas as pd

    with open(rows_file, encoding="utf-8") as f:
        result = json.load(f)
    fields = result["schema"]["fields"]
    rows = result["rows"]
    data = {}
    for i, field in enumerate(fields):
        data[i] = column([r[i] for r in rows], field)
    df = pd.DataFrame(data)
    df.columns = [f["name"] for f in fields]
    df.attrs["truncated"] = result.get("truncated", False)
    return df


def sql(line, cell):
    from IPython import get_ipython

    datasource, name = parse_header(line)
    query = cell.strip(BLANKS)
    path = os.path.join(FOLDER[0], key(datasource, query) + ".json")
    if not os.path.exists(path):
        raise SQLCellError("no rows for this query: %%sql cells run through the "
                           "nbcanvas service, which runs the query first")
    df = frame(path)
    get_ipython().user_ns[name] = df
    return df


def install(folder):
    from IPython import get_ipython

    FOLDER[0] = folder
    get_ipython().register_magic_function(sql, magic_kind="cell", magic_name="sql")
