"""mora.data"""
