"""NetVLAD initialisation: k-means centroids of what NetVLAD receives at initialisation.

{source} is "backbone" for every module that is the identity when untrained (one file per
dataset, backbone and seed serves them and every lowest trained block: the backbone's initial
weights depend only on the weights setting and the seed), or se or cbam, sampled through the
untrained module (see icsa.centroids).
"""


rule kmeans:
    input:
        index=INDEX,
    output:
        CENTROIDS,
    log:
        f"{LOGS}/kmeans/{{dataset}}-{{backbone}}-{{source}}-s{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/kmeans/{{dataset}}-{{backbone}}-{{source}}-s{{seed}}.tsv"
    conda:
        ENV
    threads: job_threads("kmeans")
    resources:
        **job_resources("kmeans"),
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
        layout=lambda wildcards: dataset_layout(wildcards.dataset),
        model=kmeans_model_spec_json,
        max_images=step_setting("kmeans", "max_images"),
        per_image=step_setting("kmeans", "descriptors_per_image"),
        iterations=step_setting("kmeans", "iterations"),
        device=job_device("kmeans"),
        gpu=gpu_prefix("kmeans"),
    shell:
        "{params.gpu}icsa kmeans --root {params.root:q} --dataset {wildcards.dataset}"
        " --layout {params.layout} --split train --model-spec {params.model:q} --seed {wildcards.seed}"
        " --max-images {params.max_images} --descriptors-per-image {params.per_image}"
        " --iterations {params.iterations} --device {params.device}"
        " --threads {resources.cpus_per_task} --out {output} > {log} 2>&1"
