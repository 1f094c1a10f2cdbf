"""soundtrail.cli"""
