"""Next-best offer: uplift models learned from randomized offer campaigns and a value-aware policy.

The library API the command line and the HTTP layer call:

* :func:`training.offers.model.load_offer_model` -> :class:`training.offers.model.OfferModel` or ``None``
* :meth:`training.offers.model.OfferModel.choose` -> one row per user: ``user_id, offer_id,
  uplift_<offer>..., expected_value, reason``
* :func:`training.offers.run.train_offers` trains, evaluates, logs and promotes (``userops train offers``).
"""
