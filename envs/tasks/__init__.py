"""envs/tasks"""
