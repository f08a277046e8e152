/* keel/keel.h - everything public in keel. */
#ifndef KEEL_KEEL_H
#define KEEL_KEEL_H

#include "keel/activity.h"
#include "keel/client.h"
#include "keel/completion.h"
#include "keel/deployment.h"
#include "keel/duration.h"
#include "keel/error.h"
#include "keel/execution.h"
#include "keel/json.h"
#include "keel/metrics.h"
#include "keel/options.h"
#include "keel/profile.h"
#include "keel/replayer.h"
#include "keel/schedule.h"
#include "keel/schema.h"
#include "keel/version.h"
#include "keel/worker.h"
#include "keel/workflow.h"

#endif
