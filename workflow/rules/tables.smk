"""Tables 1–6 of the paper: results/tableN.csv, .md (the paper's numbers beside ours) and .json.

Which runs a table needs comes from config `tables` (see common.smk: table_spec); the resolved
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
    params:
        channels=config["efficiency"]["channels"],
        height=config["efficiency"]["height"],
        width=config["efficiency"]["width"],
        batch_size=config["efficiency"]["batch_size"],
        repeats=config["efficiency"]["repeats"],
        modules=",".join(config["tables"].get("table2", {}).get("attentions", ["icsa"])),
        device=job_device("efficiency"),
        gpu=gpu_prefix("efficiency"),
    threads: job_threads("efficiency")
    resources:
        **job_resources("efficiency"),
    conda:
        ENV
    shell:
        "{params.gpu}icsa efficiency --channels {params.channels} --height {params.height}"
        " --width {params.width} --batch-size {params.batch_size} --repeats {params.repeats}"
        " --modules {params.modules} --device {params.device}"
        " --threads {resources.cpus_per_task} --out {output} > {log} 2>&1"


rule table:
    input:
        table_inputs,
        paper="config/paper_values.yaml",
    output:
        csv="results/{table}.csv",
        md="results/{table}.md",
        json="results/{table}.json",
    log:
        f"{LOGS}/tables/{{table}}.log",
    params:
        spec=table_params,
        statistics=json.dumps(config["statistics"], sort_keys=True),
        efficiency=EFFICIENCY,
    threads: job_threads("tables")
    resources:
        **job_resources("tables"),
    conda:
        ENV
    shell:
        "icsa tables build --spec {params.spec:q} --statistics {params.statistics:q}"
        " --paper {input.paper} --metrics-dir results/metrics --runs-dir results/runs"
        " --efficiency {params.efficiency}"
        " --out-csv {output.csv} --out-md {output.md} --out-json {output.json} > {log} 2>&1"
