"""mora.evaluation"""
