"""The OpenAPI schema of the endpoints, for drf-spectacular: the ``extend_schema``
documentation of each operation (:mod:`~kernel_status.api.openapi.operations`) and the
extensions that document our own serializer fields (:mod:`~kernel_status.api.openapi.extensions`).
"""
