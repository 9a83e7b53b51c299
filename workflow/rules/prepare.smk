"""Data: render the synthetic city (embedded default) and check every dataset before training.

`check_dataset` writes an index JSON per dataset; every later step depends on it, so a missing
or broken image fails here, in seconds, not hours into a training run.
"""

if config.get("synthetic"):

    rule prepare_synthetic:
        output:
            directory(config["synthetic"]["out"]),
        log:
            f"{LOGS}/prepare/synthetic.log",
        benchmark:
            f"{BENCHMARKS}/prepare/synthetic.tsv"
        conda:
            ENV
        threads: job_threads("prepare")
        resources:
            **job_resources("prepare"),
        params:
            seed=config["synthetic"].get("seed", 0),
            settings=json.dumps(config["synthetic"].get("settings", {}), sort_keys=True),
            layout=pipeline.synthetic_layout(config),
        shell:
            "icsa prepare synthetic --out {output} --seed {params.seed} --layout {params.layout}"
            " --settings {params.settings:q} --threads {resources.cpus_per_task} > {log} 2>&1"


rule check_dataset:
    input:
        dataset_source,
    output:
        INDEX,
    log:
        f"{LOGS}/check/{{dataset}}.log",
    conda:
        ENV
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
        layout=lambda wildcards: dataset_layout(wildcards.dataset),
        # User data: an image overwritten in place reruns the check (icsa/data/fingerprint.py).
        content=lambda wildcards: (
            "" if config.get("synthetic") else folder_fingerprint(dataset_root(wildcards.dataset))
        ),
    shell:
        "icsa prepare check --root {params.root:q} --dataset {wildcards.dataset}"
        " --layout {params.layout}"
        " --index-out {output} --workers {resources.cpus_per_task} > {log} 2>&1"
