"""Import every domain's models so Base.metadata knows all tables (for Alembic and tests)."""

from metricloop.alerting import models as alerting_models  # noqa: F401
from metricloop.auth import models as auth_models  # noqa: F401
from metricloop.db.models import Base
from metricloop.feedback import models as feedback_models  # noqa: F401
from metricloop.incidents import models as incident_models  # noqa: F401
from metricloop.knowledge import models as knowledge_models  # noqa: F401
from metricloop.monitors import models as monitor_models  # noqa: F401
from metricloop.monitors import pauses as pause_models  # noqa: F401
from metricloop.notify import links as link_models  # noqa: F401
from metricloop.notify import models as notify_models  # noqa: F401
from metricloop.rca import models as rca_models  # noqa: F401
from metricloop.tuning import models as tuning_models  # noqa: F401

metadata = Base.metadata
