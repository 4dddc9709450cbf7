"""mora.model.mask_engines"""
