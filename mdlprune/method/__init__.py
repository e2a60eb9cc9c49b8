"""The method itself, importing nothing but torch (and THOP, the papers' MAC counter, in ``macs``).

Read the modules in this order; each cites the section of ``docs/METHOD.md`` it implements:

=================  ==========================================================================================
``switch``         :class:`SwitchConv2d`: binary switches with straight-through gradients (METHOD §2)
``domain``         :class:`DomainBatchNorm2d`, :class:`DomainHeads`: the other per-domain layers (METHOD §1)
``multidomain``    :class:`MultiDomainNet`: routes every domain-specific layer to the batch's domain (METHOD §1)
``convert``        :func:`to_multidomain`: any torchvision-style CNN → :class:`MultiDomainNet`, or a named refusal
``losses``         the budget loss with dual ascent (METHOD §3), the sharing losses (METHOD §4)
``dependencies``   which producers' filters pruning may remove too (METHOD §6)
``pruned``         :class:`PrunedConv2d`: the dense layer a switch convolution becomes (METHOD §6)
``prune``          :func:`prune`: the physically smaller model, and the check that it is equal (METHOD §6)
``specialize``     :func:`specialize`: one domain's plain ``torch.nn`` model, BatchNorm folded (METHOD §6)
``serving``        :func:`keep_domain_models`: a multi-domain model serving its domains from specialised ones
``macs``           MACs a domain needs and MACs a model executes, counted by THOP (METHOD §7)
``metrics``        parameter memory, S-score, S_O, S_P (METHOD §7)
``backbones``      the papers' backbones: Rebuffi's ResNet-26, Wide ResNet-28-k (METHOD §9)
=================  ==========================================================================================
"""
