"""Everything that writes files or prints tables: runs, evaluation, reports, plots, the CLI, pretraining.

=================  ==========================================================================================
``runs``           train a method, prune, evaluate; one run from a configuration file
``build``          the benchmark and backbone a configuration names
``evaluate``       accuracy with the papers' crops; the results table with S, S_O, S_P
``report``         plain Markdown tables
``plots``          switch heatmaps, Pareto plots
``timing``         medians and spread of run times (CPU threads or CUDA events)
``provenance``     the machine and command recorded with every result
``pretrain``       the one-off pretraining of the shipped backbone
``cli``            the ``mdlprune`` command
=================  ==========================================================================================
"""
