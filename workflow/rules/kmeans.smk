"""NetVLAD initialisation: k-means centroids of local descriptors of the untrained backbone.

One centroids file per (dataset, backbone, seed) serves every attention module and lowest trained
block: the backbone's initial weights depend only on the weights setting and the seed.
"""


rule kmeans:
    input:
        index=INDEX,
    output:
        CENTROIDS,
    log:
        f"{LOGS}/kmeans/{{dataset}}-{{backbone}}-s{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/kmeans/{{dataset}}-{{backbone}}-s{{seed}}.tsv"
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
        weights=config["model"]["weights"],
        image_size=" ".join(str(v) for v in config["model"]["image_size"]),
        num_clusters=config["model"]["num_clusters"],
        max_images=config["kmeans"]["max_images"],
        per_image=config["kmeans"]["descriptors_per_image"],
        iterations=config["kmeans"]["iterations"],
        device=job_device("kmeans"),
        gpu=gpu_prefix("kmeans"),
    threads: job_threads("kmeans")
    resources:
        **job_resources("kmeans"),
    conda:
        ENV
    shell:
        "{params.gpu}icsa kmeans --root {params.root:q} --dataset {wildcards.dataset}"
        " --split train --backbone {wildcards.backbone} --weights {params.weights:q}"
        " --init-seed {wildcards.seed} --seed {wildcards.seed}"
        " --image-size {params.image_size} --num-clusters {params.num_clusters}"
        " --max-images {params.max_images} --descriptors-per-image {params.per_image}"
        " --iterations {params.iterations} --device {params.device}"
        " --threads {resources.cpus_per_task} --out {output} > {log} 2>&1"
