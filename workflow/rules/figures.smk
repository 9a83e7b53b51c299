# Figures of the paper (Figs. 4-10) and training curves.
#
# Every figure is marked with report(...) and a caption in workflow/report/*.rst, so that
#   snakemake --report results/report.html
# shows every table and figure with what to look at. Each figure's data lies beside it.
#
# Which runs the figures show is read from an optional `figures:` section of the config (all
# keys optional; the defaults reproduce the paper: VGG16 without attention, +IA and +ICSA, last
# block trained, first seed, main evaluation set):
#   figures: {backbone: vgg16, block: last, seed: 0, attentions: [none, ia, icsa],
#             weights_attention: icsa, retrieval_attention: icsa, evalset: main,
#             max_images: 300, per_image: 10, tsne_perplexity: 30, tsne_max_points: 2000,
#             num_queries: 4}


report: "../report/workflow.rst"


# The `figures:` section as icsa.pipeline.FigureSettings (checked at parse time), as a dict.
FIG = dataclasses.asdict(pipeline.figure_settings(config))


# Run ids of the figures' models (common.smk's naming; `block: last` resolved per backbone).
FIG_BLOCK = normalise_block(FIG["backbone"], FIG["block"], "figures.block")
FIG_SEED = FIG["seed"] if FIG["seed"] is not None else config["seeds"][0]
FIG_RUN = {
    att: run_id(config["dataset"], FIG["backbone"], att, FIG_BLOCK, FIG_SEED)
    for att in [*FIG["attentions"], FIG["weights_attention"], FIG["retrieval_attention"]]
}
FIG_RUNS = [FIG_RUN[att] for att in FIG["attentions"]]
FIG_EVALSET = resolve_evalset(FIG["evalset"], "figures.evalset")
FIG_DATASET, FIG_SPLIT = split_evalset(FIG_EVALSET)
# What the figures' footnotes call their data (the synthetic city never by the real name).
FIG_DATA_LABEL = evalset_label(FIG_EVALSET)
FIG_VAL_LABEL = f"validation: {evalset_label(config['dataset'] + '-val')}"
# Figs. 6, 7, 8 for the three models of the paper; further models continue the numbering.
FIG_TSNE = [layout.figure_file(f"fig{6 + i}_tsne_{a}.png") for i, a in enumerate(FIG["attentions"])]
FIG_LOGS = f"{LOGS}/figures"


rule figures:
    """Every figure and every table's page (what `snakemake --report` shows after `all`)."""
    input:
        layout.figure_file("fig4_retrieval_examples.png"),
        layout.figure_file("fig5_singular_values.png"),
        FIG_TSNE,
        layout.figure_file("fig9_channel_weights.png"),
        layout.figure_file("fig10_spatial_weights.png"),
        layout.figure_file("training_curves.png"),
        [layout.table_file(table, "html") for table in sorted(config["tables"])],


rule fig_local_stats:
    """One pass over the evaluation set's images: Gram matrix and a sample of local descriptors."""
    input:
        index=layout.index_file(FIG_DATASET),
        checkpoint=layout.checkpoint_best("{run}"),
    output:
        layout.local_stats_file("{run}"),
    log:
        f"{FIG_LOGS}/local_stats/{{run}}.log",
    conda:
        ENV
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    params:
        root=dataset_root(FIG_DATASET),
        layout=dataset_layout(FIG_DATASET),
        dataset=FIG_DATASET,
        split=FIG_SPLIT,
        max_images=FIG["max_images"],
        per_image=FIG["per_image"],
        device=job_device("figures"),
        gpu=gpu_prefix("figures"),
    shell:
        "{params.gpu}icsa analysis local-stats --checkpoint {input.checkpoint}"
        " --dataset-root {params.root:q} --dataset {params.dataset} --layout {params.layout}"
        " --split {params.split} --max-images {params.max_images} --per-image {params.per_image}"
        " --device {params.device} --threads {resources.cpus_per_task} --out {output} > {log} 2>&1"


rule fig5_singular_values:
    input:
        [layout.local_stats_file(run) for run in FIG_RUNS],
    output:
        png=report(
            layout.figure_file("fig5_singular_values.png"),
            caption="../report/fig5_singular_values.rst",
            category="Figures",
            labels={"figure": "Fig. 5", "content": "singular-value ratios"},
        ),
        csv=layout.figure_file("fig5_singular_values.csv"),
        json=layout.figure_file("fig5_singular_values.json"),
    log:
        f"{FIG_LOGS}/fig5.log",
    conda:
        ENV
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    params:
        data_label=FIG_DATA_LABEL,
    shell:
        "icsa analysis svd --stats {input} --out-png {output.png} --out-csv {output.csv}"
        " --out-json {output.json} --data-label {params.data_label:q}"
        " --threads {resources.cpus_per_task} > {log} 2>&1"


rule fig6_8_tsne:
    """One joint t-SNE of all models' descriptors, one panel (figure) per model."""
    input:
        [layout.local_stats_file(run) for run in FIG_RUNS],
    output:
        png=[
            report(
                path,
                caption="../report/fig6_8_tsne.rst",
                category="Figures",
                labels={"figure": f"Fig. {6 + i}", "content": f"t-SNE, attention {att}"},
            )
            for i, (path, att) in enumerate(zip(FIG_TSNE, FIG["attentions"]))
        ],
        npz=layout.figure_file("fig6_8_tsne.npz"),
    log:
        f"{FIG_LOGS}/fig6_8.log",
    conda:
        ENV
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    params:
        data_label=FIG_DATA_LABEL,
        perplexity=FIG["tsne_perplexity"],
        max_points=FIG["tsne_max_points"],
    shell:
        "icsa analysis tsne --stats {input} --out-png {output.png} --out-npz {output.npz}"
        " --perplexity {params.perplexity} --max-points {params.max_points}"
        " --data-label {params.data_label:q}"
        " --threads {resources.cpus_per_task} > {log} 2>&1"


rule fig9_10_attention_weights:
    """Heat maps of the trained ICSA's channel (Fig. 9) and spatial (Fig. 10) weights."""
    input:
        layout.checkpoint_best(FIG_RUN[FIG["weights_attention"]]),
    output:
        channel=report(
            layout.figure_file("fig9_channel_weights.png"),
            caption="../report/fig9_channel.rst",
            category="Figures",
            labels={"figure": "Fig. 9", "content": "ICSA channel weights"},
        ),
        channel_csv=layout.figure_file("fig9_channel_weights.csv"),
        spatial=report(
            layout.figure_file("fig10_spatial_weights.png"),
            caption="../report/fig10_spatial.rst",
            category="Figures",
            labels={"figure": "Fig. 10", "content": "ICSA spatial weights"},
        ),
        spatial_csv=layout.figure_file("fig10_spatial_weights.csv"),
        json=layout.figure_file("fig9_10_attention_weights.json"),
    log:
        f"{FIG_LOGS}/fig9_10.log",
    conda:
        ENV
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    shell:
        "icsa analysis attention --checkpoint {input} --out-channel-png {output.channel}"
        " --out-channel-csv {output.channel_csv} --out-spatial-png {output.spatial}"
        " --out-spatial-csv {output.spatial_csv} --out-json {output.json}"
        " --threads {resources.cpus_per_task} > {log} 2>&1"


rule fig4_retrieval_examples:
    """Queries with their top-5 database images, from the evaluation's per-query results."""
    input:
        index=layout.index_file(FIG_DATASET),
        perquery=layout.perquery_file(FIG_RUN[FIG["retrieval_attention"]], FIG_EVALSET),
    output:
        png=report(
            layout.figure_file("fig4_retrieval_examples.png"),
            caption="../report/fig4_retrieval.rst",
            category="Figures",
            labels={"figure": "Fig. 4", "content": "retrieval examples"},
        ),
        csv=layout.figure_file("fig4_retrieval_examples.csv"),
    log:
        f"{FIG_LOGS}/fig4.log",
    conda:
        ENV
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    params:
        data_label=FIG_DATA_LABEL,
        root=dataset_root(FIG_DATASET),
        layout=dataset_layout(FIG_DATASET),
        dataset=FIG_DATASET,
        split=FIG_SPLIT,
        num_queries=FIG["num_queries"],
        threshold=step_setting("evaluate", "threshold"),
    shell:
        "icsa analysis retrieval --perquery {input.perquery} --dataset-root {params.root:q}"
        " --dataset {params.dataset} --layout {params.layout} --split {params.split}"
        " --num-queries {params.num_queries}"
        " --k 5 --threshold {params.threshold} --out-png {output.png} --out-csv {output.csv}"
        " --data-label {params.data_label:q}"
        " --threads {resources.cpus_per_task} > {log} 2>&1"


rule training_curves:
    input:
        [layout.history_file(run, "csv") for run in FIG_RUNS],
    output:
        png=report(
            layout.figure_file("training_curves.png"),
            caption="../report/curves.rst",
            category="Figures",
            labels={"figure": "Training curves", "content": "loss and validation recall"},
        ),
        csv=layout.figure_file("training_curves.csv"),
    log:
        f"{FIG_LOGS}/training_curves.log",
    conda:
        ENV
    threads: job_threads("figures")
    resources:
        **job_resources("figures"),
    params:
        data_label=FIG_VAL_LABEL,
    shell:
        "icsa analysis curves --history {input} --out-png {output.png} --out-csv {output.csv}"
        " --data-label {params.data_label:q}"
        " --threads {resources.cpus_per_task} > {log} 2>&1"
