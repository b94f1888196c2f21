"""microtome.web"""
