"""Request parameters: typed, bounded parameter groups (:mod:`.groups`) composed into one model per
route (:mod:`.requests`, :mod:`.surveys`), the value parsers they use (:mod:`.values`), and the
response models of the OpenAPI document (:mod:`.responses`)."""
