"""The Kubernetes platform: the reference service applied to a cluster, cluster-side faults, distributed load.

Import ``harness.platforms.kubernetes.platform.KubernetesPlatform``; nothing is imported here so that
``--platform local`` never loads the kubernetes client.
"""
