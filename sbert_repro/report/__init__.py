"""results/ and the tables a run prints: read the committed records, render each page, draw its plots.

    runs.py      the records under results/records/, grouped by setup (all but the seed)
    labels.py    how numbers, models, data and machines are written in the pages
    gains.py     the gain table a run prints (task | metric | baseline | fine-tuned | gain | paper)
    results.py   results/README.md: the paper's tables, with plots.py's plots
    ann.py       results/ann.md (benchmarks/ann.py's records)
    perf.py      results/perf.md (benchmarks/perf.py's records)
    geometry.py  results/geometry.md (`sbert-repro geometry`'s records), with postprocessing.py's table of
                 post-processed evaluations against fine-tunes
    pages.py     make_tables: every page and plot, replaced only when all are drawn
    prose.py     the pages' headings and paragraphs, from the Markdown templates in templates/<page>.md
"""
