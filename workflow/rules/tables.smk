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
        channels=step_setting("efficiency", "channels"),
        height=step_setting("efficiency", "height"),
        width=step_setting("efficiency", "width"),
        batch_size=step_setting("efficiency", "batch_size"),
        repeats=step_setting("efficiency", "repeats"),
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
        csv=TABLE["csv"],
        md=TABLE["md"],
        json=TABLE["json"],
        # The page the Snakemake report shows inline (a CSV or Markdown would only be offered
        # for download): the paper-style table as HTML, marked differences coloured by sign,
        # each seed's values under its cell, and the table's figure right after it.
        html=report(
            TABLE["html"],
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        # The table as a figure (icsa/tables/figure.py); the HTML page embeds it.
        png=TABLE["png"],
        # The data of the table's DVC plots (dvc.yaml `plots:`): Recall@N per row, and the
        # training curve of every run behind the rows.
        recall=TABLE["recall"],
        curves=TABLE["curves"],
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
        # The results folder: `icsa tables build` finds each run's metrics, per-query ranks and
        # history (or Table 2's efficiency file) in it by icsa.layout, as the inputs above are.
        results=lambda wildcards, output: layout.table_results(output.csv, wildcards.table),
    shell:
        "icsa tables build --spec {params.spec:q} --statistics {params.statistics:q}"
        " --paper {input.paper} --results {params.results}"
        " --out-csv {output.csv} --out-md {output.md} --out-json {output.json}"
        " --out-html {output.html} --out-png {output.png} --out-recall-csv {output.recall}"
        " --out-curves-csv {output.curves} > {log} 2>&1"
