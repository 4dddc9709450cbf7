"""mora.processing"""
