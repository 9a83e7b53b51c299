"""Training: one job per run {dataset}-{backbone}-{attention}{pool}-b{block}-s{seed}
({pool}: "" for NetVLAD, "-gem" for GeM, which starts from no k-means centroids).

The run's specification (icsa.spec.RunSpec: model, recipe, seed) reaches the job as one JSON
`params:` value, so Snakemake's params trigger reruns exactly the trainings a changed value
affects. Whether the run folder's state can continue is `icsa train`'s decision, from the
fingerprint it recorded there (more epochs resume; another recipe, model or input restarts).

Scratch folder: results/runs/{run}/state/ belongs to this rule (checkpoint_last.pt, run.json,
prefix_cache/). It is not an output because Snakemake deletes the outputs of a failed job, and
an interrupted run resumes from it; `icsa train` replaces what another run left there.
"""


rule train:
    input:
        index=INDEX,
        centroids=run_centroids,
        validation=validation_index,
    output:
        checkpoint=CHECKPOINT,
        history_csv=HISTORY_CSV,
        history_json=HISTORY_JSON,
        dvclive=directory(DVCLIVE),
    log:
        f"{LOGS}/train/{RUN}.log",
    benchmark:
        f"{BENCHMARKS}/train/{RUN}.tsv"
    conda:
        ENV
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
        layout=lambda wildcards: dataset_layout(wildcards.dataset),
        run_dir=lambda wildcards: RUN_DIR.format(**wildcards),
        centroids=centroids_flag,
        validation=validation_flags,
        spec=run_spec_json,
        device=job_device("train"),
        gpu=gpu_prefix("train"),
    shell:
        "{params.gpu}icsa train --spec {params.spec:q} --root {params.root:q} --layout {params.layout}"
        " {params.centroids}{params.validation}--run-dir {params.run_dir}"
        " --device {params.device} --threads {resources.cpus_per_task} > {log} 2>&1"
