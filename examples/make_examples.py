#!/usr/bin/env python3
"""Builds the ready-to-send request files in examples/ from examples/data/.

Each example is a POST /v1/render body: cells plus the data files they read,
base64-encoded. Run it after changing data/ or the cells below:
    python3 examples/make_examples.py
"""
import base64
import csv
import datetime
import json
import os
import random
import sqlite3

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def make_data():
    """Creates the shipped data files if they are missing (deterministic)."""
    os.makedirs(DATA, exist_ok=True)
    rng = random.Random(7)
    csv_path = os.path.join(DATA, "sales.csv")
    if not os.path.exists(csv_path):
        regions = ["North", "South", "East", "West"]
        products = ["Widget", "Gadget", "Gizmo"]
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["date", "region", "product", "units", "revenue"])
            for day in range(1, 91):
                for region in regions:
                    product = rng.choice(products)
                    units = rng.randint(1, 40)
                    price = {"Widget": 12.5, "Gadget": 30.0, "Gizmo": 7.25}[product]
                    date = datetime.date(2026, 1, 1) + datetime.timedelta(days=day - 1)
                    w.writerow([date.isoformat(),
                                region, product, units,
                                round(units * price, 2)])
    db_path = os.path.join(DATA, "shop.sqlite")
    if not os.path.exists(db_path):
        con = sqlite3.connect(db_path)
        con.executescript("""
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER,
                                 ordered_on TEXT, amount REAL);
        """)
        countries = ["DE", "FR", "JP", "US", "BR"]
        for i in range(1, 41):
            con.execute("INSERT INTO customers VALUES (?, ?, ?)",
                        (i, f"Customer {i:02d}", countries[i % 5]))
        for i in range(1, 401):
            con.execute("INSERT INTO orders VALUES (?, ?, ?, ?)",
                        (i, rng.randint(1, 40),
                         f"2026-{rng.randint(1, 9):02d}-{rng.randint(1, 28):02d}",
                         round(rng.uniform(5, 500), 2)))
        con.commit()
        con.close()


def file_entry(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return {"name": name, "content_base64": base64.b64encode(f.read()).decode()}


CHART = {
    "cells": [
        {"cell_type": "markdown", "source": "## Monthly revenue"},
        "import matplotlib.pyplot as plt\n"
        "months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun']\n"
        "revenue = [12.1, 14.3, 13.8, 17.2, 19.9, 22.4]\n"
        "fig, ax = plt.subplots(figsize=(6, 3.2))\n"
        "ax.plot(months, revenue, marker='o')\n"
        "ax.set_ylabel('revenue (k$)')\n"
        "ax.set_title('Revenue by month')\n"
        "ax.grid(alpha=0.3)\n"
        "plt.show()",
    ],
}

SEABORN = {
    "cells": [
        "import seaborn as sns, pandas as pd, numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "df = pd.DataFrame({'group': np.repeat(['a', 'b', 'c'], 50),\n"
        "                   'value': np.concatenate([rng.normal(m, 1, 50) for m in (0, 1.5, 3)])})\n"
        "sns.boxplot(data=df, x='group', y='value');",
    ],
}

PLOTLY = {
    "cells": [
        {"cell_type": "markdown", "source": "## Revenue by region, interactive"},
        "import pandas as pd\nimport plotly.express as px\n"
        "df = pd.read_csv('sales.csv', parse_dates=['date'])\n"
        "weekly = df.set_index('date').groupby('region').resample('W')['revenue'].sum().reset_index()\n"
        "fig = px.line(weekly, x='date', y='revenue', color='region', height=360)\n"
        "fig.show()",
    ],
    "files": ["sales.csv"],
}

TEXT2SQL = {
    "cells": [
        {"cell_type": "markdown", "source": "### Top customers by revenue\n"
         "```sql\nSELECT c.name, c.country, COUNT(*) AS orders, SUM(o.amount) AS revenue\n"
         "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
         "GROUP BY c.id ORDER BY revenue DESC LIMIT 10\n```"},
        "import sqlite3\nimport pandas as pd\n"
        "con = sqlite3.connect('shop.sqlite')\n"
        "query = '''SELECT c.name, c.country, COUNT(*) AS orders, SUM(o.amount) AS revenue\n"
        "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
        "GROUP BY c.id ORDER BY revenue DESC LIMIT 10'''\n"
        "df = pd.read_sql_query(query, con)\n"
        "df.to_excel('top_customers.xlsx', index=False)\n"
        "df.style.format({'revenue': '{:,.2f}'}).hide(axis='index')",
    ],
    "files": ["shop.sqlite"],
}

ANALYSIS = {
    "cells": [
        {"cell_type": "markdown", "source": "## Sales overview"},
        "import pandas as pd\nimport matplotlib.pyplot as plt\n"
        "df = pd.read_csv('sales.csv', parse_dates=['date'])\n"
        "df.describe().round(2)",
        "by_region = df.groupby('region')[['units', 'revenue']].sum().sort_values('revenue', ascending=False)\n"
        "by_region",
        "fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))\n"
        "by_region['revenue'].plot.bar(ax=axes[0], title='Revenue by region')\n"
        "df.set_index('date').resample('W')['revenue'].sum().plot(ax=axes[1], title='Weekly revenue')\n"
        "plt.tight_layout()\nplt.show()",
    ],
    "files": ["sales.csv"],
}

R_CHART = {
    "kernel": "ir",
    "cells": [
        {"cell_type": "markdown", "source": "## Weekly revenue by region (R)"},
        "library(readr)\nlibrary(dplyr)\nlibrary(ggplot2)\n"
        "sales <- read_csv('sales.csv', show_col_types = FALSE)\n"
        "weekly <- sales %>%\n"
        "    mutate(week = as.Date(cut(date, 'week'))) %>%\n"
        "    group_by(week, region) %>%\n"
        "    summarise(revenue = sum(revenue), .groups = 'drop')\n"
        "options(repr.plot.width = 8, repr.plot.height = 3.5)\n"
        "ggplot(weekly, aes(week, revenue, colour = region)) +\n"
        "    geom_line(linewidth = 1) +\n"
        "    labs(x = NULL, y = 'revenue ($)', title = 'Weekly revenue by region') +\n"
        "    theme_minimal()",
        "sales %>% group_by(region) %>%\n"
        "    summarise(units = sum(units), revenue = sum(revenue)) %>%\n"
        "    arrange(desc(revenue))",
    ],
    "files": ["sales.csv"],
}

ERROR = {
    "cells": [
        "values = [1, 2, 3]",
        "print('before the error')\nvalues[10]",
    ],
}


def write(name, spec):
    body = dict(spec)
    if "files" in body:
        body["files"] = [file_entry(n) for n in body["files"]]
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump(body, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    make_data()
    write("chart", CHART)
    write("seaborn", SEABORN)
    write("plotly", PLOTLY)
    write("text2sql", TEXT2SQL)
    write("text2sql-zip", dict(TEXT2SQL, format="zip"))
    write("analysis", ANALYSIS)
    write("error", ERROR)
    write("r-chart", R_CHART)
