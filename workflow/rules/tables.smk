"""Tables 1–6 of the paper: results/tableN.csv, .md (the paper's numbers beside ours), .json
(what `dvc metrics show` lists) and .html (the page of the Snakemake report).

Which runs a table needs comes from config `tables` (icsa.pipeline.table_spec); the resolved
spec reaches `icsa tables build` as a JSON param, so editing one table's rows rebuilds only that
table (and trains only the runs it newly needs). Table 2 is built from the efficiency
measurement of `icsa efficiency` instead of runs.
"""


rule efficiency:
    output:
        EFFICIENCY,
    log:
        f"{LOGS}/efficiency.log",
    benchmark:
        f"{BENCHMARKS}/efficiency.tsv"
    conda:
        ENV
    threads: job_threads("efficiency")
    resources:
        **job_resources("efficiency"),
    params:
        channels=config["efficiency"]["channels"],
        height=config["efficiency"]["height"],
        width=config["efficiency"]["width"],
        batch_size=config["efficiency"]["batch_size"],
        repeats=config["efficiency"]["repeats"],
        modules=",".join(pipeline.efficiency_modules(config)),
        device=job_device("efficiency"),
        gpu=gpu_prefix("efficiency"),
    shell:
        "{params.gpu}icsa efficiency --channels {params.channels} --height {params.height}"
        " --width {params.width} --batch-size {params.batch_size} --repeats {params.repeats}"
        " --modules {params.modules} --device {params.device}"
        " --threads {resources.cpus_per_task} --out {output} > {log} 2>&1"


rule table:
    input:
        table_inputs,
        paper=paper_values,
    output:
        csv="results/{table}.csv",
        md="results/{table}.md",
        json="results/{table}.json",
        # The page the Snakemake report shows inline (a CSV or Markdown would only be offered
        # for download): the paper-style table as HTML, marked differences coloured by sign,
        # each seed's values under its cell, and the table's figure right after it.
        html=report(
            "results/{table}.html",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        # The table as a figure (icsa/tables/figure.py); the HTML page embeds it.
        png="results/{table}.png",
        # The data of the table's DVC plots (dvc.yaml `plots:`): Recall@N per row, and the
        # training curve of every run behind the rows.
        recall="results/{table}_recall.csv",
        curves="results/{table}_curves.csv",
    log:
        f"{LOGS}/tables/{{table}}.log",
    conda:
        ENV
    threads: job_threads("tables")
    resources:
        **job_resources("tables"),
    params:
        spec=table_params,
        statistics=json.dumps(config["statistics"], sort_keys=True),
        efficiency=EFFICIENCY,
    shell:
        "icsa tables build --spec {params.spec:q} --statistics {params.statistics:q}"
        " --paper {input.paper} --metrics-dir results/metrics --runs-dir results/runs"
        " --efficiency {params.efficiency}"
        " --out-csv {output.csv} --out-md {output.md} --out-json {output.json}"
        " --out-html {output.html} --out-png {output.png} --out-recall-csv {output.recall}"
        " --out-curves-csv {output.curves} > {log} 2>&1"
