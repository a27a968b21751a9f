"""The fleet: the 25 roles and 38 agents of the coordinator guide's roster table, each with its brief.

This is the file to edit to add, remove or scale a role (then `pulumi preview`, `pulumi up`). Each entry is
the table's row (key, title, count, department, mode) plus a one- or two-sentence brief that tells the agent
what to do and when to exit: agents exit when nothing meaningful is left, and the coordinator never kills
them, so a lower count takes effect as agents finish. A stack may override counts (`agent-fleet:counts`).
"""

from __future__ import annotations

from coordinator.fleet import Department, Mode, Role, validate_roster

ROSTER: tuple[Role, ...] = validate_roster(
    (
        Role(
            key="product_designer",
            title="Product Designer",
            count=1,
            department=Department.PRODUCT,
            mode=Mode.THINKER,
            brief="Turn the product's goals into small, well-scoped feature issues with acceptance criteria. "
            "Exit when the open feature backlog already covers what the product needs next.",
        ),
        Role(
            key="system_architect",
            title="System Architect",
            count=1,
            department=Department.PRODUCT,
            mode=Mode.THINKER,
            brief="Review the codebase's structure and open issues describing the architectural changes "
            "builders need, with the interfaces they must follow. Exit when no structural decision is pending.",
        ),
        Role(
            key="uiux_designer",
            title="UI/UX Designer",
            count=1,
            department=Department.PRODUCT,
            mode=Mode.THINKER,
            brief="Specify screens, flows and interaction details for planned features as issues the UI "
            "builders can implement. Exit when every planned user-facing feature has a design.",
        ),
        Role(
            key="ui_builder",
            title="UI Builder",
            count=3,
            department=Department.ENGINEERING,
            mode=Mode.TASK_DRIVEN,
            brief="Take one open, unclaimed frontend issue, implement it with tests and open a pull request "
            "that closes it. Exit when no frontend issue is left to take.",
        ),
        Role(
            key="api_builder",
            title="API Builder",
            count=3,
            department=Department.ENGINEERING,
            mode=Mode.TASK_DRIVEN,
            brief="Take one open, unclaimed backend or API issue, implement it with tests and open a pull "
            "request that closes it. Exit when no backend issue is left to take.",
        ),
        Role(
            key="fullstack_builder",
            title="Fullstack Builder",
            count=3,
            department=Department.ENGINEERING,
            mode=Mode.TASK_DRIVEN,
            brief="Take one open, unclaimed issue that spans frontend and backend, implement it end to end "
            "with tests and open a pull request. Exit when no such issue is left to take.",
        ),
        Role(
            key="unit_tester",
            title="Unit Tester",
            count=2,
            department=Department.QUALITY,
            mode=Mode.SELF_DIRECTED,
            brief="Find untested or weakly tested code paths and open a pull request adding unit tests that "
            "would catch real regressions. Exit when the remaining gaps are not worth a test.",
        ),
        Role(
            key="e2e_tester",
            title="E2E Tester",
            count=2,
            department=Department.QUALITY,
            mode=Mode.SELF_DIRECTED,
            brief="Add end-to-end tests for critical user journeys that lack them, and open issues for the "
            "failures they reveal. Exit when every critical journey is covered.",
        ),
        Role(
            key="security_auditor",
            title="Security Auditor",
            count=1,
            department=Department.SECURITY,
            mode=Mode.SELF_DIRECTED,
            brief="Audit the code for vulnerabilities such as injection, broken authorization and leaked "
            "secrets, and open a fix or an issue for each finding. Exit when an audit pass finds nothing new.",
        ),
        Role(
            key="dependency_manager",
            title="Dependency Manager",
            count=1,
            department=Department.SECURITY,
            mode=Mode.SELF_DIRECTED,
            brief="Upgrade outdated or vulnerable dependencies in small pull requests that keep CI green. "
            "Exit when every dependency is current or pinned for a stated reason.",
        ),
        Role(
            key="frontend_optimizer",
            title="Frontend Optimizer",
            count=1,
            department=Department.PERFORMANCE,
            mode=Mode.SELF_DIRECTED,
            brief="Measure bundle size, load time and rendering cost, and open pull requests for measurable "
            "improvements. Exit when no change would make a measurable difference.",
        ),
        Role(
            key="backend_optimizer",
            title="Backend Optimizer",
            count=1,
            department=Department.PERFORMANCE,
            mode=Mode.SELF_DIRECTED,
            brief="Find slow queries, endpoints and hot paths, and open pull requests that speed them up with "
            "before-and-after numbers. Exit when nothing measurable is left to gain.",
        ),
        Role(
            key="mobile_optimizer",
            title="Mobile Optimizer",
            count=1,
            department=Department.PERFORMANCE,
            mode=Mode.SELF_DIRECTED,
            brief="Improve the experience on mobile devices: responsive layout, touch targets and performance "
            "on slow networks. Exit when the mobile experience has no known problem left.",
        ),
        Role(
            key="refactorer",
            title="Refactorer",
            count=1,
            department=Department.CODE_HEALTH,
            mode=Mode.SELF_DIRECTED,
            brief="Simplify tangled or duplicated code in small, behaviour-preserving pull requests. "
            "Exit when no refactoring would clearly pay for itself.",
        ),
        Role(
            key="type_hardener",
            title="Type Hardener",
            count=1,
            department=Department.CODE_HEALTH,
            mode=Mode.SELF_DIRECTED,
            brief="Add precise types and remove loose ones such as any and unchecked casts, one module per "
            "pull request. Exit when the type checker runs strictly without exceptions.",
        ),
        Role(
            key="code_cleaner",
            title="Code Cleaner",
            count=1,
            department=Department.CODE_HEALTH,
            mode=Mode.SELF_DIRECTED,
            brief="Remove dead code, unused files and stale comments, and fix lint warnings. "
            "Exit when the linters are clean and nothing unused remains.",
        ),
        Role(
            key="web_standards_engineer",
            title="Web Standards Engineer",
            count=1,
            department=Department.STANDARDS,
            mode=Mode.SELF_DIRECTED,
            brief="Fix accessibility, semantic HTML, SEO and browser-compatibility problems found by audit "
            "tools. Exit when an audit reports no problem worth fixing.",
        ),
        Role(
            key="documentation_engineer",
            title="Documentation Engineer",
            count=1,
            department=Department.STANDARDS,
            mode=Mode.SELF_DIRECTED,
            brief="Bring the README, API documentation and guides in line with the code as it is now. "
            "Exit when the documentation matches the code.",
        ),
        Role(
            key="cicd_engineer",
            title="CI/CD Engineer",
            count=1,
            department=Department.INFRASTRUCTURE,
            mode=Mode.SELF_DIRECTED,
            brief="Keep the CI pipeline fast and reliable: fix flaky jobs, cache dependencies and make sure "
            "the required checks run on every pull request. Exit when CI is green, fast and stable.",
            # GitHub refuses a push touching .github/workflows from a token without the workflows permission.
            github_permissions=(("workflows", "write"),),
        ),
        Role(
            key="code_reviewer",
            title="Code Reviewer",
            count=4,
            department=Department.GATES,
            mode=Mode.REVIEWER,
            brief="Review one open pull request that waits for review: approve it when it is correct and "
            "tested, otherwise request specific changes. Exit when no pull request waits for review.",
        ),
        Role(
            key="sentinel",
            title="Sentinel",
            count=1,
            department=Department.GATES,
            mode=Mode.SENTINEL,
            brief="Watch production health and recent merges; when production breaks, open a revert pull "
            "request for the merge that caused it. Exit when production is healthy and no revert is pending.",
        ),
        Role(
            key="growth_strategist",
            title="Growth Strategist",
            count=1,
            department=Department.GROWTH,
            mode=Mode.THINKER,
            brief="Study the product's funnel and open issues for experiments that could grow activation and "
            "retention, each with a metric. Exit when the experiment backlog is full enough.",
        ),
        Role(
            key="growth_engineer",
            title="Growth Engineer",
            count=2,
            department=Department.GROWTH,
            mode=Mode.TASK_DRIVEN,
            brief="Take one open growth-experiment issue and implement it behind a flag with its tracking. "
            "Exit when no growth issue is left to take.",
        ),
        Role(
            key="content_creator",
            title="Content Creator",
            count=2,
            department=Department.GROWTH,
            mode=Mode.SELF_DIRECTED,
            brief="Write and improve user-facing content such as landing copy, onboarding text and help "
            "articles, in pull requests. Exit when the content is complete and current.",
        ),
        Role(
            key="analytics_engineer",
            title="Analytics Engineer",
            count=1,
            department=Department.GROWTH,
            mode=Mode.SELF_DIRECTED,
            brief="Add the event tracking and dashboards needed to measure the product's key metrics and "
            "experiments. Exit when every key metric and running experiment is measured.",
        ),
    )
)
