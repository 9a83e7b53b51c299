"""Training: one job per run {dataset}-{backbone}-{attention}-b{block}-s{seed}.

The recipe reaches the job as JSON `params:`, so Snakemake's params trigger reruns exactly the
trainings a changed value affects. `icsa train` resumes from `checkpoint_last.pt` when the run
folder has one; the signature file written first makes sure it only resumes the *same* job (an
interrupted run), never a run made with other settings, centroids or data.
"""


rule train:
    input:
        index=INDEX,
        centroids=run_centroids,
    output:
        checkpoint=CHECKPOINT,
        history_csv=f"results/runs/{RUN}/history.csv",
        history_json=f"results/runs/{RUN}/history.json",
    log:
        f"{LOGS}/train/{RUN}.log",
    benchmark:
        f"{BENCHMARKS}/train/{RUN}.tsv"
    params:
        root=lambda wildcards: dataset_root(wildcards.dataset),
        run_dir=lambda wildcards: RUN_DIR.format(**wildcards),
        weights=config["model"]["weights"],
        image_size=" ".join(str(v) for v in config["model"]["image_size"]),
        num_clusters=config["model"]["num_clusters"],
        settings=json.dumps(config["train"], sort_keys=True),
        device=job_device("train"),
        gpu=gpu_prefix("train"),
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        ENV
    shell:
        # cksum (POSIX, unlike md5sum) fingerprints the inputs and parameters of this job.
        "sig=$(cat {input.centroids} {input.index} | cksum | cut -d' ' -f1)-$(echo"
        " {params.settings:q} {params.weights:q} {params.image_size} {params.num_clusters}"
        " | cksum | cut -d' ' -f1);"
        " if [ \"$(cat {params.run_dir}/.job-signature 2>/dev/null)\" != \"$sig\" ];"
        " then rm -f {params.run_dir}/checkpoint_last.pt; fi;"
        " mkdir -p {params.run_dir} && echo \"$sig\" > {params.run_dir}/.job-signature &&"
        " {params.gpu}icsa train --root {params.root:q} --dataset {wildcards.dataset}"
        " --backbone {wildcards.backbone} --attention {wildcards.attention}"
        " --lowest-trained-block {wildcards.block} --seed {wildcards.seed}"
        " --init-seed {wildcards.seed} --weights {params.weights:q}"
        " --image-size {params.image_size} --num-clusters {params.num_clusters}"
        " --centroids {input.centroids} --settings {params.settings:q}"
        " --run-dir {params.run_dir} --device {params.device}"
        " --threads {resources.cpus_per_task} > {log} 2>&1"
