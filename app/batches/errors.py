from app.core.errors import NotFound


class BatchNotFound(NotFound):
    code = "batch_not_found"
    title = "Batch not found"
