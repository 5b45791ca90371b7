"""Tests of the joint SE + ASR model (a package so that module names cannot clash with other test folders)."""
