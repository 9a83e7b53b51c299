# Figures of the paper (Figs. 4-10), training curves, and the report's copies of Tables 1-6.
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

FIG = {
    "backbone": "vgg16",
    "block": "last",
    "seed": None,  # None: the first of `seeds`
    "attentions": ["none", "ia", "icsa"],
    "weights_attention": "icsa",
    "retrieval_attention": "icsa",
    "evalset": "main",
    "max_images": 300,
    "per_image": 10,
    "tsne_perplexity": 30,
    "tsne_max_points": 2000,
    "num_queries": 4,
    **(config.get("figures") or {}),
}
FIG_TABLES = [1, 2, 3, 4, 5, 6]


def fig_run(attention):
    """Run id `{dataset}-{backbone}-{attention}-b{block}-s{seed}` of a figure's model."""
    backbone, block = FIG["backbone"], str(FIG["block"])
    if block == "last":
        block = str(config.get("num_blocks", {}).get(backbone, 5))
    seed = FIG["seed"] if FIG["seed"] is not None else config.get("seeds", [0])[0]
    return f"{config['dataset']}-{backbone}-{attention}-b{block}-s{seed}"


def fig_evalset():
    """`{dataset}-{split}` of the evaluation set the figures use (a key of `evalsets` or a name)."""
    name = FIG["evalset"]
    return config.get("evalsets", {}).get(name, name)


def fig_split():
    """(dataset, split, root, dbStruct .mat) of the figures' evaluation set."""
    from icsa.data import split_mat_path

    dataset, split = fig_evalset().rsplit("-", 1)
    root = config["datasets"][dataset]["root"]
    return dataset, split, root, str(split_mat_path(root, dataset, split))


FIG_RUNS = [fig_run(a) for a in FIG["attentions"]]
# Figs. 6, 7, 8 for the three models of the paper; further models continue the numbering.
FIG_TSNE = [f"results/figures/fig{6 + i}_tsne_{a}.png" for i, a in enumerate(FIG["attentions"])]
FIG_THREADS = config.get("resources", {}).get("figures", {}).get("cpus", 1)


rule figures:
    """All figures and the report's table pages (the inputs of `snakemake --report`)."""
    input:
        "results/figures/fig4_retrieval_examples.png",
        "results/figures/fig5_singular_values.png",
        FIG_TSNE,
        "results/figures/fig9_channel_weights.png",
        "results/figures/fig10_spatial_weights.png",
        "results/figures/training_curves.png",
        expand("results/report/table{n}.html", n=FIG_TABLES),


rule fig_local_stats:
    """One pass over the evaluation set's images: Gram matrix and a sample of local descriptors."""
    input:
        checkpoint="results/runs/{run}/checkpoint_best.pt",
        mat=lambda wc: fig_split()[3],
    output:
        "results/figures/data/local_stats/{run}.npz",
    params:
        dataset=lambda wc: fig_split()[0],
        split=lambda wc: fig_split()[1],
        root=lambda wc: fig_split()[2],
        max_images=FIG["max_images"],
        per_image=FIG["per_image"],
        device=config.get("device", "cpu"),
    threads: FIG_THREADS
    log:
        "logs/figures/local_stats/{run}.log",
    shell:
        "icsa analysis local-stats --checkpoint {input.checkpoint} --dataset-root {params.root}"
        " --dataset {params.dataset} --split {params.split} --max-images {params.max_images}"
        " --per-image {params.per_image} --device {params.device} --threads {threads}"
        " --out {output} 2> {log}"


rule fig5_singular_values:
    input:
        expand("results/figures/data/local_stats/{run}.npz", run=FIG_RUNS),
    output:
        png=report(
            "results/figures/fig5_singular_values.png",
            caption="../report/fig5_singular_values.rst",
            category="Figures",
            labels={"figure": "Fig. 5", "content": "singular-value ratios"},
        ),
        csv="results/figures/fig5_singular_values.csv",
        json="results/figures/fig5_singular_values.json",
    log:
        "logs/figures/fig5.log",
    shell:
        "icsa analysis svd --stats {input} --out-png {output.png} --out-csv {output.csv}"
        " --out-json {output.json} 2> {log}"


rule fig6_8_tsne:
    input:
        expand("results/figures/data/local_stats/{run}.npz", run=FIG_RUNS),
    output:
        png=[
            report(
                p,
                caption="../report/fig6_8_tsne.rst",
                category="Figures",
                labels={"figure": f"Fig. {6 + i}", "content": f"t-SNE, {a}"},
            )
            for i, (p, a) in enumerate(zip(FIG_TSNE, FIG["attentions"]))
        ],
        npz="results/figures/fig6_8_tsne.npz",
    params:
        perplexity=FIG["tsne_perplexity"],
        max_points=FIG["tsne_max_points"],
    threads: FIG_THREADS
    log:
        "logs/figures/fig6_8.log",
    shell:
        "icsa analysis tsne --stats {input} --out-png {output.png} --out-npz {output.npz}"
        " --perplexity {params.perplexity} --max-points {params.max_points}"
        " --threads {threads} 2> {log}"


rule fig9_10_attention_weights:
    """Heat maps of the trained ICSA's channel (Fig. 9) and spatial (Fig. 10) weights."""
    input:
        "results/runs/{run}/checkpoint_best.pt".format(run=fig_run(FIG["weights_attention"])),
    output:
        channel=report(
            "results/figures/fig9_channel_weights.png",
            caption="../report/fig9_channel.rst",
            category="Figures",
            labels={"figure": "Fig. 9", "content": "ICSA channel weights"},
        ),
        channel_csv="results/figures/fig9_channel_weights.csv",
        spatial=report(
            "results/figures/fig10_spatial_weights.png",
            caption="../report/fig10_spatial.rst",
            category="Figures",
            labels={"figure": "Fig. 10", "content": "ICSA spatial weights"},
        ),
        spatial_csv="results/figures/fig10_spatial_weights.csv",
        json="results/figures/fig9_10_attention_weights.json",
    log:
        "logs/figures/fig9_10.log",
    shell:
        "icsa analysis attention --checkpoint {input} --out-channel-png {output.channel}"
        " --out-channel-csv {output.channel_csv} --out-spatial-png {output.spatial}"
        " --out-spatial-csv {output.spatial_csv} --out-json {output.json} 2> {log}"


rule fig4_retrieval_examples:
    """Queries with their top-5 database images from the evaluation's per-query results."""
    input:
        perquery="results/metrics/{run}/{evalset}-perquery.npz".format(
            run=fig_run(FIG["retrieval_attention"]), evalset=fig_evalset()
        ),
        mat=lambda wc: fig_split()[3],
    output:
        png=report(
            "results/figures/fig4_retrieval_examples.png",
            caption="../report/fig4_retrieval.rst",
            category="Figures",
            labels={"figure": "Fig. 4", "content": "retrieval examples"},
        ),
        csv="results/figures/fig4_retrieval_examples.csv",
    params:
        dataset=lambda wc: fig_split()[0],
        split=lambda wc: fig_split()[1],
        root=lambda wc: fig_split()[2],
        num_queries=FIG["num_queries"],
        threshold=config.get("evaluate", {}).get("threshold", 25.0),
    log:
        "logs/figures/fig4.log",
    shell:
        "icsa analysis retrieval --perquery {input.perquery} --dataset-root {params.root}"
        " --dataset {params.dataset} --split {params.split} --num-queries {params.num_queries}"
        " --k 5 --threshold {params.threshold} --out-png {output.png} --out-csv {output.csv}"
        " 2> {log}"


rule training_curves:
    input:
        expand("results/runs/{run}/history.csv", run=FIG_RUNS),
    output:
        png=report(
            "results/figures/training_curves.png",
            caption="../report/curves.rst",
            category="Figures",
            labels={"figure": "Training curves", "content": "loss and validation recall"},
        ),
        csv="results/figures/training_curves.csv",
    log:
        "logs/figures/training_curves.log",
    shell:
        "icsa analysis curves --history {input} --out-png {output.png} --out-csv {output.csv}"
        " 2> {log}"


rule report_table:
    """A table (CSV + Markdown) as an HTML page, so that the report shows it inline."""
    input:
        csv="results/table{n}.csv",
        md="results/table{n}.md",
    output:
        report(
            "results/report/table{n}.html",
            caption="../report/table{n}.rst",
            category="Tables",
            labels={"table": "Table {n}"},
        ),
    params:
        title=lambda wc: "Table {n}: {title}".format(
            n=wc.n, title=config.get("tables", {}).get(f"table{wc.n}", {}).get("title", "")
        ),
    wildcard_constraints:
        n="[1-6]",
    log:
        "logs/figures/report_table{n}.log",
    shell:
        "icsa analysis table-html --csv {input.csv} --md {input.md} --title {params.title:q}"
        " --out {output} 2> {log}"
