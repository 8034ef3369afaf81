from flywheel_feedback.services.cli import main

main()
