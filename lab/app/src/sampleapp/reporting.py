"""Error-report filter that also hides connection URLs (they may embed passwords)."""

import re

from django.views.debug import SafeExceptionReporterFilter


class SampleAppExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DSN", flags=re.I)
