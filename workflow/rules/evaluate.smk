"""Evaluation: descriptors of an evaluation set, then Recall@N and per-query ranks.

An evaluation set is "{dataset}-{split}" (e.g. pitts30k-test, tokyotm-val); the model comes from
the run's best checkpoint. Extraction also writes a record of what the descriptors were made
from; evaluation checks it against the run's model spec and refuses descriptors of another run.
"""


rule extract:
    input:
        checkpoint=CHECKPOINT,
        index=evalset_index,
    output:
        db=DESCRIPTORS_DB,
        q=DESCRIPTORS_Q,
        record=DESCRIPTORS_RECORD,
    log:
        f"{LOGS}/extract/{RUN}/{{evalset}}.log",
    benchmark:
        f"{BENCHMARKS}/extract/{RUN}/{{evalset}}.tsv"
    conda:
        ENV
    threads: job_threads("extract")
    resources:
        **job_resources("extract"),
    params:
        root=lambda wildcards: dataset_root(split_evalset(wildcards.evalset)[0]),
        layout=lambda wildcards: dataset_layout(split_evalset(wildcards.evalset)[0]),
        dataset=lambda wildcards: split_evalset(wildcards.evalset)[0],
        split=lambda wildcards: split_evalset(wildcards.evalset)[1],
        dtype=step_setting("extract", "dtype"),
        fast=step_setting("extract", "fast_inference"),
        batch_size=step_setting("extract", "batch_size"),
        workers=step_setting("extract", "workers"),
        device=job_device("extract"),
        gpu=gpu_prefix("extract"),
        # The model the checkpoint must be (icsa extract refuses another backbone, K, size...).
        model=model_spec_json,
    shell:
        "{params.gpu}icsa extract --checkpoint {input.checkpoint} --root {params.root:q}"
        " --dataset {params.dataset} --layout {params.layout} --split {params.split}"
        " --out-db {output.db} --out-q {output.q} --dtype {params.dtype}"
        " --fast-inference {params.fast}"
        " --batch-size {params.batch_size} --workers {params.workers}"
        " --model-spec {params.model:q} --out-record {output.record}"
        " --device {params.device} --threads {resources.cpus_per_task} > {log} 2>&1"


rule evaluate:
    input:
        db=DESCRIPTORS_DB,
        q=DESCRIPTORS_Q,
        record=DESCRIPTORS_RECORD,
        index=evalset_index,
    output:
        metrics=METRICS,
        perquery=PERQUERY,
    log:
        f"{LOGS}/evaluate/{RUN}/{{evalset}}.log",
    conda:
        ENV
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    params:
        root=lambda wildcards: dataset_root(split_evalset(wildcards.evalset)[0]),
        layout=lambda wildcards: dataset_layout(split_evalset(wildcards.evalset)[0]),
        dataset=lambda wildcards: split_evalset(wildcards.evalset)[0],
        split=lambda wildcards: split_evalset(wildcards.evalset)[1],
        policy=lambda wildcards: policy_option(split_evalset(wildcards.evalset)[0]),
        run=lambda wildcards: RUN.format(**wildcards),
        ns=" ".join(str(n) for n in step_setting("evaluate", "ns")),
        threshold=step_setting("evaluate", "threshold"),
        # The descriptors must come from this run's model (icsa evaluate checks the record).
        model=model_spec_json,
    shell:
        "icsa evaluate --root {params.root:q} --dataset {params.dataset} --layout {params.layout}"
        " --split {params.split}{params.policy}"
        " --db {input.db} --q {input.q} --model-id {params.run} --ns {params.ns}"
        " --threshold {params.threshold} --record {input.record} --model-spec {params.model:q}"
        " --out-metrics {output.metrics}"
        " --out-perquery {output.perquery} --device cpu"
        " --threads {resources.cpus_per_task} > {log} 2>&1"
